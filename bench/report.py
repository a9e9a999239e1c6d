"""The results of bench/sync_bench.py as a Markdown table and a PNG chart.

`render(results, png)` draws the chart and returns the Markdown; `publish(md, png)`
puts both into README.md (between the bench markers) and docs/bench/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MiB, GiB = 1 << 20, 1 << 30
ROWS = ["ecr-mirror cold", "ecr-mirror cold, mounting", "ecr-mirror warm", "skopeo cold", "skopeo warm",
        "floor fetch", "floor upload"]
START, END = "<!-- bench:sync:start -->", "<!-- bench:sync:end -->"
PUBLISHED_PNG = REPO / "docs" / "bench" / "sync.png"


def _num(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def render(results: dict, png: Path) -> str:
    m, mach, corpus = results["medians"], results["machine"], results["corpus"]
    floor_wall = results["floor_wall_s"]
    lines = [
        f"Corpus: {corpus['repos']} repositories, {corpus['tags']} tags, {corpus['manifests']} manifests, "
        f"{corpus['blobs']} blobs, {corpus['unique_bytes'] / GiB:.2f} GiB distinct "
        f"({corpus['per_repo_bytes'] / GiB:.2f} GiB counting each blob once per repository); "
        f"medians of {results['runs']} runs. ecr-mirror: {results['workers']} worker processes "
        f"(the template's default reserved concurrency) of {results['concurrency']} blobs in flight each; "
        f"the floors keep {results['workers'] * results['concurrency']} blobs in flight.",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, {mach['arch']}, "
        f"Linux {mach['kernel']}, Python {mach['python']}, {mach['skopeo']}; {mach['date']}, "
        f"commit {mach['git']}.",
        "",
        "| run | wall s | CPU s | peak RSS MiB | source requests | counted pulls | blob GETs (repeated) "
        "| read from source MiB | written to target MiB | wall vs skopeo | wall vs floor |",
        "|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name in (row for row in ROWS if row in m):  # the mounting row: unless --mounting off
        r = m[name]
        requests = ", ".join(f"{k} {v:g}" for k, v in r.get("requests", {}).items()) or "-"
        pulls = f"{r['pulls']:g}" if "pulls" in r else "-"
        gets = f"{r['blob_gets']:g} ({r['blob_gets_repeated']:g})" if "blob_gets" in r else "-"
        read = _num(r["bytes_read"] / MiB, 0) if "bytes_read" in r else "-"
        written = r.get("bytes_written", r["bytes"] if name == "floor upload" else None)
        phase = "cold" if "cold" in name else name.split()[-1]
        versus = m.get(f"skopeo {phase}") if name.startswith("ecr-mirror") else None
        lines.append(
            f"| {name} | {_num(r['wall_s'])} | {_num(r['cpu_s'])} | {_num(r['max_rss_mib'], 0)} | {requests} "
            f"| {pulls} | {gets} | {read} | {_num(written / MiB, 0) if written is not None else '-'} "
            f"| {_ratio(r['wall_s'], versus['wall_s']) if versus else '-'} "
            f"| {_ratio(r['wall_s'], floor_wall) if phase == 'cold' else '-'} |")
    floor = results["cpu_floor"]
    lines += [
        "",
        f"Floors: the wall-time floor is the slower of *floor fetch* (every blob fetched once and "
        f"hashed) and *floor upload* (the bytes ecr-mirror must upload, each blob once per repository, "
        f"put into the same emulator with bare boto3 calls): {_num(floor_wall)} s. The CPU floor is "
        f"sha256 + base64 of those {floor['bytes'] / GiB:.2f} GiB in 10 MiB parts: "
        f"{floor['total_s'] / (floor['bytes'] / GiB):.2f} s/GiB. Every UploadLayerPart is also signed "
        f"with SigV4, which hashes the part's base64 (a third more bytes than the part) with sha256: "
        f"another {floor['sigv4_sha256_s'] / (floor['bytes'] / GiB):.2f} s/GiB that no client of ECR's "
        f"API avoids, not in the floor of the goal. ecr-mirror's CPU includes the start of each of its "
        f"processes (imports, clients): the warm run, the scheduler alone since nothing is queued, "
        f"took {m['ecr-mirror warm']['cpu_s']:.1f} CPU s.",
        "",
        *mounting_sentence(results),
        "| goal | measured | met |",
        "|---|---|---|",
        *(f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |" for g in results["goals"]),
        "",
        lambda_sentence(results),
        "",
    ]
    draw(results, png)
    return "\n".join(lines)


def mounting_sentence(results: dict) -> list[str]:
    """Bytes uploaded into ECR with blob mounting off and on, against the distinct bytes."""
    m, corpus = results["medians"], results["corpus"]
    if "ecr-mirror cold, mounting" not in m:
        return []
    off, on = m["ecr-mirror cold"], m["ecr-mirror cold, mounting"]
    return [f"Blob mounting (`BlobMounting`, the account setting on): cold, ecr-mirror uploaded "
            f"{off['bytes_written'] / MiB:,.0f} MiB without it and {on['bytes_written'] / MiB:,.0f} MiB "
            f"with it ({on['bytes_mounted'] / MiB:,.0f} MiB in {on['blobs_mounted']:g} blobs mounted "
            f"instead), for {corpus['unique_bytes'] / MiB:,.0f} MiB of distinct blobs; "
            f"{off['cpu_s']:.1f} vs {on['cpu_s']:.1f} CPU s.", ""]


def lambda_sentence(results: dict) -> str:
    m = results["medians"]
    cold = m["ecr-mirror cold"]
    gib = results["cpu_floor"]["bytes"] / GiB
    rss = results["peak_rss_mib"]
    per_gib = cold["cpu_s"] / gib
    warm, skopeo_warm = m["ecr-mirror warm"], m["skopeo warm"]
    return (
        f"What it means on Lambda: the busiest worker peaked at {rss:.0f} MiB, so memory is not "
        f"what sizes the function; CPU is. Lambda gives a full vCPU at 1,769 MB, so a cold sync "
        f"costs about {per_gib:.1f} s of duration per GiB mirrored when it is CPU-bound, and at a "
        f"smaller size proportionally longer for the same GB-seconds. A warm run, the daily case, "
        f"took {warm['cpu_s']:.1f} CPU s and {warm['pulls']:g} counted pulls in all, against "
        f"{skopeo_warm['cpu_s']:.1f} CPU s and {skopeo_warm['pulls']:g} pulls for skopeo sync.")


def draw(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, mach = results["medians"], results["machine"]
    tools = [("ecr-mirror", "#1f77b4"), ("skopeo", "#ff7f0e")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    width = 0.38

    def bars(ax, key: str, title: str, unit: str) -> None:
        for i, (tool, colour) in enumerate(tools):
            values = [m[f"{tool} {phase}"][key] for phase in ("cold", "warm")]
            xs = [x + (i - 0.5) * width for x in range(2)]
            ax.bar(xs, values, width, label=tool, color=colour)
            for x, v in zip(xs, values, strict=True):
                ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(2), ["cold", "warm"])
        ax.set_title(title)
        ax.set_ylabel(unit)

    bars(axes[0], "wall_s", "wall time", "s")
    floor_wall = results["floor_wall_s"]
    axes[0].axhline(floor_wall, color="grey", linestyle="--", linewidth=1)
    axes[0].annotate("cold floor", (1.45, floor_wall), color="grey", fontsize=8, va="bottom", ha="right")
    bars(axes[1], "cpu_s", "CPU of the mirroring processes", "CPU s")
    floor_cpu = results["cpu_floor"]["total_s"]
    axes[1].axhline(floor_cpu, color="grey", linestyle="--", linewidth=1)
    axes[1].annotate("cold floor: sha256+base64", (1.45, floor_cpu), color="grey", fontsize=8, va="bottom", ha="right")
    bars(axes[2], "max_rss_mib", "peak RSS (largest process)", "MiB")
    bars(axes[3], "pulls", "counted pulls (manifest GETs)", "requests")
    axes[0].legend(loc="upper right", fontsize=8)
    corpus = results["corpus"]
    fig.suptitle(f"ecr-mirror vs skopeo sync: {corpus['repos']} repositories, {corpus['tags']} tags, "
                 f"{corpus['unique_bytes'] / GiB:.2f} GiB; medians of {results['runs']} runs\n"
                 f"{mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB; {mach['date']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def publish(markdown: str, png: Path) -> None:
    """Replace README.md's benchmark section and docs/bench/sync.png."""
    PUBLISHED_PNG.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, PUBLISHED_PNG)
    readme = REPO / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    image = f"![ecr-mirror vs skopeo sync]({PUBLISHED_PNG.relative_to(REPO)})"
    readme.write_text(f"{head}{START}\n{image}\n\n{markdown}\n{END}{tail}")
    print(f"updated README.md and {PUBLISHED_PNG.relative_to(REPO)}")
