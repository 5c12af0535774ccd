"""The GPU detector and embedder against the CPU numpy adapters on the real photos of ``media_dir``.

Every check runs twice where it can: on the CPU (same code, no graphs, FP32 — runs in CI and proves
the pipeline logic) and on CUDA (FP16 + CUDA graphs — skipped without a GPU; run on the GPU machine).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from engines.align import align_faces  # noqa: E402
from engines.backends.pytorch_backend import PyTorchBackend  # noqa: E402
from engines.detectors.retinaface import RetinaFace  # noqa: E402
from engines.gpu.detector import GpuRetinaFace, batched_nms_torch, nms_torch  # noqa: E402
from engines.gpu.embedder import GpuArcFace, bucket_for  # noqa: E402
from engines.nms import iou_matrix, nms  # noqa: E402
from engines.recognizers.arcface import ArcFace  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
#: (device, precision): the CPU run checks the logic exactly, the CUDA run the FP16 fast path
MODES = [("cpu", "fp32"), pytest.param("cuda", "fp16", marks=cuda), pytest.param("cuda", "fp32", marks=cuda)]
#: FP16 moves scores by ~1e-3: a face this close to the threshold may legitimately appear on one side only
BORDERLINE = 0.02


@pytest.fixture(scope="module")
def photos(media_dir):
    paths = sorted((media_dir / "scenes").glob("*.jpg")) + sorted((media_dir / "people").glob("*/*"))
    images = {p.name if p.parent.name == "scenes" else f"{p.parent.name}/{p.name}": cv2.imread(str(p)) for p in paths}
    assert len(images) >= 10 and all(im is not None for im in images.values())
    return images


@pytest.fixture(scope="module")
def retinaface_net(models_mirror):
    from engines.detectors.retinaface_net import load_retinaface

    return load_retinaface(models_mirror / "retinaface_mnet025.pth")


@pytest.fixture(scope="module")
def mobilefacenet(models_mirror):
    from engines.recognizers.mobilefacenet import mobilefacenet_from_onnx

    return mobilefacenet_from_onnx(models_mirror / "w600k_mbf.onnx")


@pytest.fixture(scope="module")
def reference(retinaface_net, photos):
    """The numpy adapter on the FP32 CPU module: the detections every GPU mode must reproduce."""
    detector = RetinaFace(PyTorchBackend(retinaface_net, device="cpu"))
    return {name: detector.detect(im) for name, im in photos.items()}


@pytest.fixture(autouse=True)
def _exact_fp32_on_cuda():
    """FP32 on CUDA means FP32: cuDNN's TF32 default would otherwise blur the strict comparisons."""
    if not HAS_CUDA:
        yield
        return
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def _assert_same_faces(ref, got, name: str, threshold: float, tolerant: bool) -> list[float]:
    """Same faces: each reference face matched by one detection with box IoU > 0.98, nothing extra.
    ``tolerant`` (FP16) lets faces within BORDERLINE of the score threshold go unmatched on either side
    and matches at IoU > 0.9: two anchors of one face scoring within FP16 noise may swap, and NMS then
    keeps the other anchor's box. Returns the matched IoUs."""
    iou = iou_matrix(ref.boxes, got.boxes) if len(ref) and len(got) else np.zeros((len(ref), len(got)))
    matched_got, ious = set(), []
    for i in np.argsort(-ref.scores):
        j = int(np.argmax(iou[i])) if len(got) else -1
        if j >= 0 and iou[i, j] > (0.9 if tolerant else 0.98) and j not in matched_got:
            matched_got.add(j)
            ious.append(float(iou[i, j]))
            assert abs(got.scores[j] - ref.scores[i]) < 0.02, (name, ref.scores[i], got.scores[j])
            assert np.abs(got.landmarks[j] - ref.landmarks[i]).max() < 0.02 * max(
                ref.boxes[i, 2] - ref.boxes[i, 0], 4.0), name
        else:
            assert tolerant and ref.scores[i] < threshold + BORDERLINE, (name, i, ref.scores[i], iou[i].max())
    for j in set(range(len(got))) - matched_got:
        assert tolerant and got.scores[j] < threshold + BORDERLINE, (name, "extra", got.scores[j])
    if not tolerant:
        assert len(got) == len(ref), name
    return ious


@pytest.mark.timeout(600)
@pytest.mark.parametrize("device,precision", MODES)
def test_detector_matches_numpy_adapter_on_real_photos(retinaface_net, photos, reference, device, precision):
    detector = GpuRetinaFace(retinaface_net, device=device, precision=precision)
    ious = []
    for name, image in photos.items():
        got = detector.detect(image)
        ref = reference[name]
        # a face count that differs only by borderline faces is allowed in FP16; FP32 must agree exactly
        ious += _assert_same_faces(ref, got, name, detector.score_threshold, tolerant=precision == "fp16")
    assert len(ious) >= 20  # the crowd and group photos carry most faces: the comparison is not vacuous
    assert np.mean(np.asarray(ious) > 0.98) >= 0.95  # FP16 too: all but the odd anchor swap agree to IoU 0.98


@pytest.mark.timeout(300)
def test_detector_eager_fallback_gives_the_same_faces(retinaface_net, photos, reference, monkeypatch):
    """Too few graph NMS steps, or fewer graph candidates than faces: the frame is redone eagerly, same result."""
    import engines.gpu.detector as gd

    image, ref = photos["crowd.jpg"], reference["crowd.jpg"]
    for steps, topk in ((1, gd.GRAPH_TOPK), (gd.GRAPH_NMS_STEPS, 16)):
        monkeypatch.setattr(gd, "GRAPH_NMS_STEPS", steps)
        monkeypatch.setattr(gd, "GRAPH_TOPK", topk)
        detector = GpuRetinaFace(retinaface_net, device="cpu", precision="fp32")
        detector._plan(1, *image.shape[:2])
        _, redo, *_ = detector._forward(torch.from_numpy(image)[None])
        assert bool(redo[0])  # the graph part knows it could not finish this frame
        _assert_same_faces(ref, detector.detect(image), "crowd.jpg", 0.5, tolerant=False)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("device,precision", MODES)
def test_detector_batches_equal_single_frames(retinaface_net, photos, device, precision):
    """A batch (mixed sizes, and a same-size stack through the pinned buffer) gives per-frame results."""
    detector = GpuRetinaFace(retinaface_net, device=device, precision=precision, max_faces=3)
    frames = [photos["six_people.jpg"], photos["obama-720p.jpg"], photos["two_people.jpg"], photos["six_people.jpg"]]
    singles = [detector.detect(f) for f in frames]
    assert [len(s) for s in singles] == [3, 1, 2, 3]  # max_faces caps the six
    stacked = detector.detect_batch(np.stack([frames[0]] * 3))
    for single, got in zip(singles + [singles[0]] * 3, detector.detect_batch(frames) + stacked):
        assert len(got) == len(single)
        np.testing.assert_allclose(got.boxes, single.boxes, atol=0.05)
    buf = detector.host_buffer(2, *frames[1].shape[:2])
    buf[:] = frames[1]
    for got in detector.detect_batch(buf):
        np.testing.assert_allclose(got.boxes, singles[1].boxes, atol=0.05)


@cuda
@pytest.mark.timeout(300)
def test_frames_in_a_page_locked_ring_upload_directly_and_give_the_same_faces(retinaface_net, photos):
    """The pipeline's path: frames in a shared-memory ring registered with CUDA go to the GPU by DMA from
    their slots (no staging copy) and give what the staging path gives; frames elsewhere still work."""
    from app.runtime.ring import FrameRing

    detector = GpuRetinaFace(retinaface_net, device="cuda", precision="fp16")
    frame = photos["six_people.jpg"]
    h, w = frame.shape[:2]
    expected = detector.detect_batch([frame, frame[:, ::-1].copy()])
    with FrameRing.create(slots=4, height=h, width=w) as ring:
        assert detector.register_host_memory(ring.memory())
        ring.write(frame, seq=0, ts=0.0)
        ring.write(frame[:, ::-1], seq=1, ts=0.0)
        views = [ring.view(0), ring.view(1)]
        assert all(detector._registered_frame(v) for v in views)
        got = detector.detect_batch(views)
        assert ring.still_valid(0) and ring.still_valid(1)
        del views
        detector.unregister_host_memory()
    for e, g in zip(expected, got):
        assert len(g) == len(e) > 0
        np.testing.assert_allclose(g.boxes, e.boxes, atol=0.05)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("device,precision", MODES)
def test_detect_align_batch_cuts_the_crops_the_cpu_warp_cuts(retinaface_net, photos, device, precision):
    """Crops warped on the device from the frames uploaded for detection (mixed sizes, the staging path, and
    on CUDA the page-locked ring) equal engines.align's cv2 crops of the same landmarks to within one level."""
    from app.runtime.ring import FrameRing

    detector = GpuRetinaFace(retinaface_net, device=device, precision=precision)
    frames = [photos["six_people.jpg"], photos["obama-720p.jpg"], photos["two_people.jpg"], photos["obama-240p.jpg"]]
    dets, crops = detector.detect_align_batch(frames)
    assert [len(c) for c in crops] == [len(d) for d in dets] and sum(map(len, dets)) >= 9
    for frame, det, got in zip(frames, dets, crops):
        want = align_faces(frame, det.landmarks)
        assert got.dtype == np.uint8 and got.shape == want.shape
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.3, (diff.max(), diff.mean())
    for d, b in zip(dets, detector.detect_batch(frames)):  # the detections are detect_batch's
        np.testing.assert_allclose(d.boxes, b.boxes, atol=1e-3)
    if device != "cuda":
        return
    frame = frames[0]
    with FrameRing.create(slots=2, height=frame.shape[0], width=frame.shape[1]) as ring:
        assert detector.register_host_memory(ring.memory())
        ring.write(frame, seq=0, ts=0.0)
        view = ring.view(0)
        ring_dets, ring_crops = detector.detect_align_batch([view])
        del view
        detector.unregister_host_memory()
    assert len(ring_dets[0]) == len(dets[0])
    assert np.abs(ring_crops[0].astype(int) - crops[0].astype(int)).max() <= 1


def test_torch_nms_equals_numpy_nms():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 300):
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2))], axis=1).astype(np.float32)
        scores = rng.choice(np.linspace(0.5, 1, 20), n).astype(np.float32)  # ties included
        got = nms_torch(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4).numpy()
        np.testing.assert_array_equal(got, nms(boxes, scores, 0.4))
    groups = torch.tensor([0, 0, 1, 1])
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    keep = batched_nms_torch(boxes, torch.tensor([0.9, 0.8, 0.95, 0.7]), groups, 0.4)
    assert keep.tolist() == [2, 0, 3]  # box 1 overlaps box 0 of its own group; box 2 is in another group


def test_bucket_for():
    assert [bucket_for(n, (1, 8, 32, 128)) for n in (1, 2, 8, 9, 128, 500)] == [1, 8, 8, 32, 128, 128]


@pytest.fixture(scope="module")
def faces(photos, reference):
    """(frame, landmarks, CPU-aligned crops) for the photos with faces."""
    out = []
    for name in ("six_people.jpg", "two_people.jpg", "obama-1080p.jpg", "biden/biden.jpg"):
        image, det = photos[name], reference[name]
        out.append((image, det.landmarks, align_faces(image, det.landmarks)))
    return out


@pytest.mark.timeout(600)
@pytest.mark.parametrize("device,precision", MODES)
def test_embedder_matches_numpy_adapter(mobilefacenet, faces, device, precision):
    ref = ArcFace(PyTorchBackend(mobilefacenet, device="cpu"))
    gpu = GpuArcFace(mobilefacenet, device=device, precision=precision, buckets=(1, 8, 32))
    crops = np.concatenate([c for _, _, c in faces])
    assert len(crops) >= 10
    want = ref.embed(crops)
    for n in (1, 5, len(crops)):  # bucket 1, padded 5 → 8, and several buckets' worth
        got = gpu.embed(crops[:n])
        assert got.shape == (n, 512) and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        cos = (got * want[:n]).sum(1)
        assert cos.min() > (0.999 if precision == "fp16" else 0.99999), cos
    big = np.concatenate([crops] * 4)  # more than the largest bucket: split into chunks
    np.testing.assert_allclose(gpu.embed(big)[-len(crops):], gpu.embed(crops), atol=2e-3)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("device,precision", MODES)
def test_embed_async_two_in_flight_give_what_embed_gives(mobilefacenet, faces, device, precision):
    gpu = GpuArcFace(mobilefacenet, device=device, precision=precision, buckets=(1, 8, 32))
    crops = np.concatenate([c for _, _, c in faces])
    a, b = crops[:7], crops[::-1].copy()  # different sizes and faces, one over the largest bucket when x4
    first = gpu.embed_async(a)
    second = gpu.embed_async(np.concatenate([b] * 4))
    np.testing.assert_allclose(first(), gpu.embed(a), atol=2e-3)  # the pair of "first" was not reused yet
    np.testing.assert_allclose(second()[-len(b):], gpu.embed(b), atol=2e-3)
    if device == "cuda":  # three calls later the staging pair of ``stale`` holds another batch: refused
        stale = gpu.embed_async(a)
        gpu.embed_async(b)
        gpu.embed_async(b)
        with pytest.raises(RuntimeError, match="reused"):
            stale()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("device,precision", MODES)
def test_gpu_alignment_matches_cpu_alignment(mobilefacenet, faces, device, precision):
    gpu = GpuArcFace(mobilefacenet, device=device, precision=precision)
    ref = ArcFace(PyTorchBackend(mobilefacenet, device="cpu"))
    for image, landmarks, crops in faces:
        warped = gpu.align_tensor(torch.from_numpy(image).to(device), landmarks).permute(0, 2, 3, 1).cpu().numpy()
        diff = np.abs(warped - crops.astype(np.float32))
        assert diff.max() <= 1.0 and diff.mean() < 0.5  # cv2 rounds to uint8; the GPU warp does not
        cos = (gpu.embed_aligned(image, landmarks) * ref.embed(crops)).sum(1)
        assert cos.min() > 0.998, cos


def test_degenerate_landmarks_give_black_crops(mobilefacenet, photos):
    gpu = GpuArcFace(mobilefacenet, device="cpu", precision="fp32")
    image = photos["two_people.jpg"]
    crops = gpu.align_tensor(torch.from_numpy(image), np.full((2, 5, 2), 50.0))
    assert crops.shape == (2, 3, 112, 112) and float(crops.abs().max()) == 0.0
