"""A detector's crops: what each edge keeps, what is cut, and the emulated detector's counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harpagon.config.pipeline import MAX_DETECTIONS
from harpagon.runtime.wire.errors import FailedPrecondition
from harpagon.runtime.wire.modules import CropEdge, ModuleSpec
from harpagon.runtime.worker import crops
from harpagon.runtime.worker.executor import EmulatedExecutor, TorchExecutor

# --- cutting -------------------------------------------------------------------------------------


def test_cut_gives_the_pixels_inside_each_box():
    """Item 0: a rectangle over pixels [8, 24) of a dark image, a different brightness per channel;
    item 1: dark left half, bright right half. A box at least 2 pixels per output pixel (the sampling
    ratio) samples only inside it, so the crops are exact."""
    images = torch.zeros((3, 3, 32, 32))  # one more image than items: a padded batch
    for c in range(3):
        images[0, c, 8:24, 8:24] = (c + 1) / 5
    images[1, :, :, 16:] = 1.0
    out = crops.cut(images, [np.array([[8, 8, 24, 24]]), np.array([[8, 0, 24, 16], [16, 0, 32, 32]])], (3, 4, 4))
    assert out.shape == (3, 3, 4, 4) and out.dtype == torch.uint8 and out.device.type == "cpu"
    assert [set(out[0, c].flatten().tolist()) for c in range(3)] == [{51}, {102}, {153}]
    assert (out[1, :, :, :2] == 0).all() and (out[1, :, :, 2:] == 255).all()  # over the split
    assert (out[2] == 255).all()  # the right half
    assert crops.cut(images, [np.zeros((0, 4)), np.zeros((0, 4))], (3, 5, 6)).shape == (0, 3, 5, 6)
    with pytest.raises(ValueError, match="crops of 1 channels asked for, but the images have 3"):
        crops.cut(images, [np.array([[0, 0, 4, 4]])], (1, 4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cut_on_cuda_gives_the_cpus_crops_and_returns_them_to_the_host():
    """A GPU detector cuts on its device (scripts/gpu_check.sh runs this on cuda:0)."""
    images = torch.rand((2, 3, 48, 64), generator=torch.Generator().manual_seed(0))
    boxes = [np.array([[4, 6, 40, 30], [0, 0, 64, 48]]), np.array([[10, 10, 20, 44]])]
    cpu = crops.cut(images, boxes, (3, 24, 24))
    gpu = crops.cut(images.to("cuda:0"), boxes, (3, 24, 24))
    assert gpu.device.type == "cpu" and gpu.shape == cpu.shape == (3, 3, 24, 24)
    assert (gpu.int() - cpu.int()).abs().max() <= 1


def test_one_roi_align_call_per_edge_and_batch(monkeypatch):
    import torchvision.ops

    calls = []
    real = torchvision.ops.roi_align
    monkeypatch.setattr(torchvision.ops, "roi_align", lambda *a, **k: calls.append(1) or real(*a, **k))
    boxes, scores, labels = detections([[0.9, 0.8, 0.7], [0.6, 0.5, -1]], [[1, 2, 1], [1, 1, -1]])
    edges = (CropEdge("a", (3, 4, 4), min_score=0.0), CropEdge("b", (3, 8, 2), labels=(2,), min_score=0.0))
    sets = crops.crop_sets(edges, boxes, scores, labels, torch.rand((2, 3, 16, 16)))
    assert len(calls) == 2 and sets["a"].items.shape == (5, 3, 4, 4) and sets["b"].items.shape == (1, 3, 8, 2)


# --- selection -----------------------------------------------------------------------------------


def detections(scores: list[list[float]], labels: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs shaped as a detector's; a score of -1 marks padding (label -1, score 0)."""
    s = np.zeros((len(scores), MAX_DETECTIONS), np.float32)
    lab = np.full((len(scores), MAX_DETECTIONS), -1, np.int64)
    for i, (row, ls) in enumerate(zip(scores, labels, strict=True)):
        for j, (score, label) in enumerate(zip(row, ls, strict=True)):
            if score >= 0:
                s[i, j], lab[i, j] = score, label
    boxes = np.tile(np.array([1, 2, 9, 12], np.float32), (len(scores), MAX_DETECTIONS, 1))
    return boxes, s, lab


def test_select_keeps_the_edges_labels_and_scores_highest_first_at_most_k():
    boxes, scores, labels = detections([[0.3, 0.9, 0.6, 0.8, 0.55], [0.2]], [[3, 3, 1, 3, 3], [3]])
    pick = [k.tolist() for k in crops.select(CropEdge("c", (3, 4, 4), labels=(3,), min_score=0.5),
                                             boxes, scores, labels)]
    assert pick == [[1, 3, 4], []]
    top2 = crops.select(CropEdge("c", (3, 4, 4), labels=(3,), min_score=0.5, max_crops=2), boxes, scores, labels)
    assert [k.tolist() for k in top2] == [[1, 3], []]
    every = crops.select(CropEdge("c", (3, 4, 4), min_score=0.0), boxes, scores, labels)
    assert [k.tolist() for k in every] == [[1, 3, 2, 4, 0], [0]]  # padding rows (label -1) never pass


def test_zero_detections_in_an_item_or_in_the_whole_batch():
    edge = CropEdge("c", (3, 6, 5), min_score=0.5)
    boxes, scores, labels = detections([[0.9], [0.1]], [[1], [1]])
    images = torch.rand((2, 3, 16, 16))
    (one,) = crops.crop_sets((edge,), boxes, scores, labels, images).values()
    assert one.counts.tolist() == [1, 0] and one.detection.tolist() == [0] and one.items.shape == (1, 3, 6, 5)
    boxes, scores, labels = detections([[], [0.2]], [[], [1]])
    (none,) = crops.crop_sets((edge,), boxes, scores, labels, images).values()
    assert none.counts.tolist() == [0, 0] and none.detection.dtype == np.int32
    assert none.items.shape == (0, 3, 6, 5) and none.items.dtype == np.uint8
    assert none.to_proto("c").counts == [0, 0]


# --- a real detector -----------------------------------------------------------------------------


def test_a_real_detectors_kept_detections_become_its_crops():
    """SSDlite with random weights on CPU: its detections carry low scores, so the edges keep every
    score (min_score 0) and filter by label and count."""
    torch.manual_seed(0)
    edges = (CropEdge("all", (3, 24, 24), min_score=0.0),
             CropEdge("even", (3, 16, 8), labels=tuple(range(0, 91, 2)), min_score=0.0, max_crops=7))
    spec = ModuleSpec("det", "ssdlite320_mobilenet_v3_large", 2, (3, 320, 320), crops=edges)
    runner = TorchExecutor("cpu", threads=2).load(spec)
    x = np.random.default_rng(1).integers(0, 256, (2, 3, 320, 320), dtype=np.uint8)
    result = runner(x)
    boxes, scores, labels = result.outputs
    assert boxes.shape == (2, MAX_DETECTIONS, 4) and scores.shape == labels.shape == (2, MAX_DETECTIONS)
    assert (np.diff(scores, axis=1) <= 0).all()  # highest first
    assert set(result.crops) == {"all", "even"} and result.crops["all"].counts.sum() > 0
    images = torch.from_numpy(x).float() / 255
    for edge in edges:
        got = result.crops[edge.child]
        want = []
        for i in range(2):
            kept = sorted((j for j in range(MAX_DETECTIONS) if labels[i, j] >= 0 and
                           edge.keeps(int(labels[i, j]), float(scores[i, j]))), key=lambda j: -scores[i, j])
            want.append(kept[:edge.max_crops] if edge.max_crops else kept)
        assert got.counts.tolist() == [len(k) for k in want]
        for i in range(2):
            detection, items = got.of(i)
            assert detection.tolist() == want[i]
            assert items.shape == (len(want[i]), *edge.shape) and items.dtype == np.uint8
            again = crops.cut(images[i:i + 1], [boxes[i, detection]], edge.shape).numpy()
            assert np.abs(items.astype(int) - again.astype(int)).max(initial=0) <= 1


def test_crops_edges_on_a_classifier_are_refused_at_load():
    spec = ModuleSpec("c", "resnet18", 1, (3, 32, 32), crops=(CropEdge("x", (3, 8, 8)),))
    with pytest.raises(FailedPrecondition, match="need a detector, but 'resnet18' is a classify model"):
        TorchExecutor("cpu", threads=1).load(spec)


# --- emulated detectors --------------------------------------------------------------------------


def emulated(*edges: CropEdge, batch: int = 4, name: str = "det", shape=(3, 48, 64)):
    profiles = {("yolo9000", "fake"): {batch: (0.0, 0.0)}, ("resnet18", "fake"): {batch: (0.0, 0.0)}}
    return EmulatedExecutor("fake", profiles).load(ModuleSpec(name, "yolo9000", batch, shape, crops=edges))


def run(runner, items: int, batch: int = 4):
    out = []
    for start in range(0, items, batch):
        out.append(runner(np.zeros((min(batch, items - start), *runner.spec.input_shape), np.uint8)))
    return out


def test_emulated_detector_counts_follow_the_scale_deterministically():
    edges = (CropEdge("a", (3, 8, 8), min_score=0.3, scale=1.5),
             CropEdge("b", (1, 4, 2), labels=(7, 9), min_score=0.95, scale=0.25))
    results = run(emulated(*edges), 40)
    a = np.concatenate([r.crops["a"].counts for r in results])
    assert a.sum() == 60 and a.tolist() == [math.floor((f + 1) * 1.5) - math.floor(f * 1.5) for f in range(40)]
    assert np.concatenate([r.crops["b"].counts for r in results]).sum() == 10
    for r in results:
        boxes, scores, labels = r.outputs
        assert boxes.dtype == scores.dtype == np.float32 and labels.dtype == np.int64
        assert (np.diff(scores, axis=1) <= 0).all()  # b's 0.95 before a's 0.9
        real = labels >= 0
        x1, y1, x2, y2 = (boxes[..., k][real] for k in range(4))
        assert (0 <= x1).all() and (x1 < x2).all() and (x2 <= 64).all()
        assert (0 <= y1).all() and (y1 < y2).all() and (y2 <= 48).all()
        assert (boxes[~real] == 0).all() and (scores[~real] == 0).all()
        assert real.sum() == sum(int(c.counts.sum()) for c in r.crops.values())
        for edge in edges:
            c = r.crops[edge.child]
            assert c.items.shape == (c.counts.sum(), *edge.shape) and not c.items.any()
            for i in range(len(c.counts)):
                detection, _ = c.of(i)
                assert all(edge.keeps(int(labels[i, j]), float(scores[i, j])) for j in detection)
                assert (labels[i, detection] == (edge.labels[0] if edge.labels else 1)).all()
                assert np.allclose(scores[i, detection], max(edge.min_score, 0.9))


def test_emulated_poisson_counts_have_the_mean_and_repeat():
    edge = CropEdge("p", (3, 4, 4), scale=2.0, poisson=True)
    counts = [np.concatenate([r.crops["p"].counts for r in run(emulated(edge, batch=100), 3000, 100)])
              for _ in range(2)]
    assert np.array_equal(counts[0], counts[1])  # seeded by the module's name: runs repeat
    assert abs(counts[0].mean() - 2.0) < 0.1 and counts[0].var() > 1.0  # Poisson(2): variance 2
    other = np.concatenate([r.crops["p"].counts for r in run(emulated(edge, batch=100, name="x"), 300, 100)])
    assert not np.array_equal(other, counts[0][:300])


def test_emulated_counts_are_capped_by_max_crops_and_max_detections():
    capped = run(emulated(CropEdge("a", (3, 4, 4), scale=5.0, max_crops=2)), 8)
    assert all(r.crops["a"].counts.tolist() == [2, 2, 2, 2] for r in capped)
    (full,) = run(emulated(CropEdge("a", (3, 4, 4), scale=80.0), CropEdge("b", (3, 4, 4), min_score=0.99,
                                                                             scale=80.0)), 2)
    assert full.crops["b"].counts.tolist() == [80, 80] and full.crops["a"].counts.tolist() == [20, 20]
    assert (full.outputs[2] >= 0).all()  # every row used, none past MAX_DETECTIONS
    detection, _ = full.crops["a"].of(1)
    assert detection.tolist() == list(range(80, 100))


def test_emulated_classifiers_give_zeros_of_their_output_and_childless_detectors_no_detections():
    profiles = {("resnet18", "fake"): {2: (0.0, 0.0)}, ("yolo9000", "fake"): {2: (0.0, 0.0)},
                ("mystery", "fake"): {2: (0.0, 0.0)}}
    ex = EmulatedExecutor("fake", profiles)
    known = ex.load(ModuleSpec("c", "resnet18", 2, (3, 8, 8)))(np.zeros((1, 3, 8, 8), np.uint8))
    assert known.outputs[0].shape == (1, 1000) and not known.outputs[0].any() and known.crops == {}
    # a detector that is an app's sink answers as one (its reply has boxes, scores and labels)
    sink = ex.load(ModuleSpec("d", "yolo9000", 2, (3, 8, 8)))(np.zeros((2, 3, 8, 8), np.uint8))
    boxes, scores, labels = sink.outputs
    assert boxes.shape == (2, MAX_DETECTIONS, 4) and scores.shape == labels.shape == (2, MAX_DETECTIONS)
    assert (labels == -1).all() and not scores.any() and sink.crops == {}
    unknown = ex.load(ModuleSpec("m", "mystery", 2, (3, 8, 8)))(np.zeros((2, 3, 8, 8), np.uint8))
    assert [o.shape for o in unknown.outputs] == [(2, 1)]


def test_crops_from_full_frames_are_cut_a_chunk_at_a_time_with_the_same_pixels(monkeypatch):
    """The float copies of full frames are bounded (decode.RESIZE_PIXELS), as the frames' resize is;
    every item's crops come back in order whatever the chunks."""
    from harpagon.runtime.worker import decode

    gen = torch.Generator().manual_seed(3)
    frames = [torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8, generator=gen) for _ in range(4)]
    frames.insert(2, None)  # an item in error: no crops
    boxes = [np.array([[0, 0, 30, 20], [10, 10, 60, 40]]), np.array([[5, 5, 25, 25]]), np.zeros((0, 4)),
             np.array([[20, 0, 60, 40]]), np.array([[0, 0, 60, 40], [30, 20, 40, 30]])]
    whole = crops.cut_frames(frames, boxes, (3, 8, 8))
    calls: list[int] = []
    real = crops.cut
    monkeypatch.setattr(decode, "RESIZE_PIXELS", 2 * 40 * 60)  # two frames a chunk
    monkeypatch.setattr(crops, "cut", lambda images, b, shape: calls.append(len(images)) or real(images, b, shape))
    chunked = crops.cut_frames(frames, boxes, (3, 8, 8))
    assert calls == [2, 2] and whole.shape == (6, 3, 8, 8) and torch.equal(chunked, whole)
