"""Write models/profiles/catalog.yaml (the `profiles` section) from the public figures below, deriving the missing rows.

Every row is labelled in the output: `public` rows are copied from their source; `derived` rows say
how they were computed; every row's memory is an estimate, and says how it was computed (no source
states a memory per batch size). Run: python scripts/build_catalog.py > models/profiles/catalog.yaml
"""

from __future__ import annotations

# Public figures: (model, hardware) -> {batch: mean_ms}, with the source of each table.
PUBLIC = {
    ("resnet50", "v100"): ("ResNet-50, TensorRT 4 FP32 [S1]",
                           {1: 2.68, 2: 4.08, 4: 6.08, 8: 8.28, 16: 13.05, 32: 23.13, 48: 31.29, 64: 42.53,
                            128: 80.56, 256: 160.73}),
    ("resnet50_fp16", "v100"): ("ResNet-50, TensorRT 4 FP16 [S1]",
                                {1: 2.08, 2: 2.65, 4: 2.84, 8: 3.29, 16: 4.35, 32: 6.59, 48: 8.33, 64: 11.56,
                                 128: 21.27, 256: 39.73}),
    ("resnet50", "t4"): ("ResNet-50, Paddle Inference + TensorRT 8 FP32 [S2]", {1: 3.52, 2: 5.21, 4: 9.37}),
    ("resnet50_fp16", "t4"): ("ResNet-50, Paddle Inference + TensorRT 8 FP16 [S2]", {1: 1.30, 2: 1.90, 4: 3.18}),
    ("mobilenet_v1", "t4"): ("MobileNetV1, Paddle Inference + TensorRT 8 FP32 [S2]", {1: 0.87, 2: 1.41, 4: 2.52}),
    ("vgg16", "titanx"): ("Caffe VGG-16 [S3]",
                          {1: 6.3, 2: 14.5, 4: 20.6, 8: 28.8, 16: 54.2, 24: 81.4, 32: 107.0, 48: 161.4, 64: 222.1}),
    ("vgg_face", "titanx"): ("Caffe VGG-Face [S3]",
                             {1: 6.4, 2: 14.5, 4: 20.5, 8: 29.0, 16: 54.2, 24: 81.2, 32: 106.3, 48: 160.9,
                              64: 227.6}),
    ("vgg_s", "titanx"): ("Caffe VGG-S [S3]",
                          {1: 3.1, 2: 3.6, 4: 5.9, 8: 9.0, 16: 14.9, 24: 20.8, 32: 28.2, 48: 40.9, 64: 58.4}),
    ("yolo9000", "titanx"): ("Darknet YOLO9000, 480x480 [S3]",
                             {1: 21.7, 2: 41.2, 4: 80.8, 8: 155.7, 16: 311.6, 24: 467.6}),
}

# Peak FP32 TFLOPS from NVIDIA's data sheets [S4], used only to carry a TITAN X row to other GPUs.
PEAK_FP32 = {"titanx": 10.97, "v100": 15.7, "t4": 8.1}
# Batch sizes to extrapolate on T4, where only b = 1, 2, 4 are public.
T4_EXTRA = (8, 16, 32)


# Memory estimates [M]: model -> (parameters, bytes per value, activation values per item). Activation
# values per item: the input plus the outputs of every convolution, pooling and fully connected layer
# for one input, each kept for the whole pass (no buffer reuse; BN, ReLU and residual adds in place).
# Counted with forward hooks on torchvision's resnet50() and vgg16() [M1] (vgg_face: vgg16 with 2622
# classes [M2]), and on models built from the layer tables of [M3-M5] for the others. Parameters: the
# same models' counts. Bytes: 4 for FP32 rows, 2 for FP16 ones (weights and activations).
MEMORY = {
    "resnet50": (25_557_032, 4, 11_468_264),
    "resnet50_fp16": (25_557_032, 2, 11_468_264),
    "mobilenet_v1": (4_210_088, 4, 5_195_240),       # MobileNetV1 1.0-224, Table 1 of [M3]
    "vgg16": (138_357_544, 4, 15_262_696),
    "vgg_face": (145_002_878, 4, 15_264_318),
    "vgg_s": (102_908_520, 4, 2_246_824),             # CNN-S, Table 1 of [M4]
    "yolo9000": (48_793_101, 4, 31_358_925),          # darknet cfg/yolo9000.cfg at 480x480 [M5]
}
# A flat allowance per model for the framework's scratch memory (convolution workspace); not measured.
WORKSPACE_MB = 256
MIB = 1024 * 1024


def memory(model: str, batch: int) -> tuple[float, str]:
    """Estimated memory of `model` at `batch`, MiB: weights + batch x activations + workspace."""
    params, nbytes, acts = MEMORY[model]
    weights, per_item = params * nbytes / MIB, acts * nbytes / MIB
    mb = round(weights + batch * per_item + WORKSPACE_MB, 1)
    return mb, f"memory estimate: {weights:.1f} + {batch} x {per_item:.2f} + {WORKSPACE_MB} MiB [M]"


def derive() -> dict[tuple[str, str], list[tuple[int, float, str]]]:
    rows: dict[tuple[str, str], list[tuple[int, float, str]]] = {}
    for key, (label, table) in PUBLIC.items():
        rows[key] = [(b, ms, f"public: {label}") for b, ms in table.items()]
    # Extrapolate T4 tables linearly from the per-image slope between b = 2 and b = 4.
    for (model, hw), (_, table) in PUBLIC.items():
        if hw == "t4":
            slope = (table[4] - table[2]) / 2
            for b in T4_EXTRA:
                ms = round(table[4] + (b - 4) * slope, 2)
                rows[(model, hw)].append((b, ms, f"derived: {table[4]} + ({b} - 4) x {slope:.3f} (T4 slope b=2..4)"))
    # Carry TITAN X tables to V100 and T4 by the ratio of peak FP32 throughput.
    for (model, hw), (_, table) in PUBLIC.items():
        if hw != "titanx":
            continue
        for target in ("v100", "t4"):
            k = PEAK_FP32["titanx"] / PEAK_FP32[target]
            rows[(model, target)] = [(b, round(ms * k, 2), f"derived: TITAN X {ms} x {k:.4f} (peak FP32 ratio)")
                                     for b, ms in table.items()]
    return rows


def main() -> None:
    print("# Generated by scripts/build_catalog.py; sources and derivations: models/profiles/README.md")
    print("# Each row is [batch, mean_ms, std_ms, memory_mb]; the comment says whether the latency is public")
    print("# or derived, and how, and how the memory was estimated: weights + batch x activations + workspace.")
    print("profiles:")
    for (model, hw), rows in sorted(derive().items()):
        print(f"  - model: {model}")
        print(f"    hardware: {hw}")
        print("    batches:")
        for b, ms, label in sorted(rows):
            mb, how = memory(model, b)
            print(f"      - [{b}, {ms}, 0.0, {mb}]  # {label}; {how}")


if __name__ == "__main__":
    main()
