import torch

from priorlab.methods.memory.protocol import kshot_counts, label_planes, previous_labels, shot_indices


def test_previous_labels_offset_by_one_with_null_first():
    y = torch.tensor([[2, 0, 1, 2]])
    prev = previous_labels(y, 3)
    assert prev.shape == (1, 4, 3)
    assert torch.equal(prev[0, 0], torch.zeros(3))          # null label at step 1
    assert torch.equal(prev[0, 1], torch.tensor([0., 0., 1.]))  # y_0 = 2
    assert torch.equal(prev[0, 3], torch.tensor([0., 1., 0.]))  # y_2 = 1


def test_label_planes_all_ones_in_true_class_plane():
    onehot = torch.tensor([[0., 1., 0., 0., 0.]])
    planes = label_planes(onehot, 7)
    assert planes.shape == (1, 5, 7, 7)
    assert torch.all(planes[0, 1] == 1)
    assert planes[0, [0, 2, 3, 4]].abs().sum() == 0


def test_shot_indices_hand_made_sequence():
    y = torch.tensor([[0, 1, 0, 0, 2, 1, 2, 0]])
    assert shot_indices(y).tolist() == [[0, 0, 1, 2, 0, 1, 1, 3]]


def test_kshot_counts_hand_made_sequence():
    y = torch.tensor([[0, 1, 0, 0, 2, 1, 2, 0]])
    pred = torch.tensor([[1, 1, 0, 2, 2, 1, 0, 0]])
    logits = torch.nn.functional.one_hot(pred, 3).float()
    counts = kshot_counts(logits, y, [0, 1, 2, 3])
    # 0-shot steps: 0,1,4 -> preds 1,1,2 vs 0,1,2 -> 2 correct of 3
    assert [int(v) for v in counts[0]] == [2, 3]
    # 1-shot steps: 2,5,6 -> 0,1,0 vs 0,1,2 -> 2 of 3
    assert [int(v) for v in counts[1]] == [2, 3]
    assert [int(v) for v in counts[2]] == [0, 1]
    assert [int(v) for v in counts[3]] == [1, 1]
