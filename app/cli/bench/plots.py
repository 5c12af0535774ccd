"""The bench charts (matplotlib, imported only when one is asked for)."""

from __future__ import annotations


def plot_embedder(result: dict, path: str) -> None:
    """Grouped bars: faces/s per backend at each batch size (log scale: CPU and GPU differ by 100x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(r["backend"] for r in result["embedder"]))
    batches = sorted({r["batch"] for r in result["embedder"]})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(backends), 1)
    for k, b in enumerate(backends):
        vals = [next((r["faces_per_s"] for r in result["embedder"] if r["backend"] == b and r["batch"] == n), 0)
                for n in batches]
        ax.bar([i + k * width for i in range(len(batches))], vals, width, label=b)
    ax.set_xticks([i + width * (len(backends) - 1) / 2 for i in range(len(batches))], [f"batch {n}" for n in batches])
    ax.set_yscale("log")
    ax.set_ylabel("faces/s")
    ax.set_title(f"ArcFace embedder throughput — {result['machine']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)




def plot_timeline(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name in ("every_frame", "live"):
        if name in result:
            tl = result[name]["timeline"]
            ax.plot(tl["t"], tl["latency_ms"], lw=1, label=f"{name} ({result[name]['processed_fps']} fps)")
    ax.set_xlabel("capture time (s)")
    ax.set_ylabel("capture→display (ms)")
    ax.set_title(f"pipeline latency — {result['machine']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
