"""Train tokentui's bundled demo model from scratch on the Python standard library's own source.

Why this exists: tokentui must open on a fresh machine with no network and no GPU, where no model
weights can be downloaded. Every machine with Python has the standard library's source, so a small
GPT-2 model trained on it (with its own byte-level BPE tokenizer) can be rebuilt anywhere, and what
it writes (Python) is easy to judge by eye.

Reproducible: fixed seeds, fixed file split (a hash of each module's relative path), settings
recorded in the model card. Resumable: a checkpoint is written every 200 steps to ``--work-dir``
and picked up on the next start. Runs on a 2-core CPU in about an hour with the defaults (bf16
autocast and torch.compile; both can be turned off for CPUs without bf16 support, at 2-3x the time).

    python tools/train_demo_model.py                # train (or resume), evaluate, write the model
    python tools/train_demo_model.py --eval-only    # re-measure the shipped model, rewrite its card
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import math
import os
import platform
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tokentui" / "assets" / "demo-model"
DEFAULT_WORK = REPO / ".demo-train"
EOS = "<|endoftext|>"

# Folders left out of the corpus: tests (huge, repetitive fixtures), generated data tables (codec
# tables in encodings/, pydoc's topic dump, HTML entity tables) and vendored wheels.
EXCLUDED_TOP = {"site-packages", "encodings", "pydoc_data", "ensurepip", "test", "__pycache__"}
EXCLUDED_ANY = {"test", "tests", "idle_test", "__pycache__"}
EXCLUDED_FILES = {"html/entities.py"}
HELD_OUT_MODULO = 16  # one module in 16, chosen by a hash of its path, is held out for evaluation
VALIDATION_MODULO = 32  # one training module in 32 (by another byte of the hash) only watches for overfitting
VALIDATION_TOKENS = 60_000  # how much of the validation split the progress lines score

# Byte-level BPE writes a space as "Ġ", a newline as "Ċ", a tab as "ĉ".
BYTE_SPACE, BYTE_WHITESPACE = "Ġ", {"Ġ", "Ċ", "ĉ", "č"}


@dataclass
class Settings:
    vocab_size: int = 8192
    n_layer: int = 6
    n_embd: int = 256
    n_head: int = 8
    context: int = 512
    batch_size: int = 8
    steps: int = 4200
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 150
    weight_decay: float = 0.1
    dropout: float = 0.0  # residual and embedding dropout (attention dropout would leave SDPA's fast path)
    space_split: float = 0.2  # share of " word" tokens also seen as " " + "word" (see split_spaces)
    bf16: bool = True  # bf16 autocast: 2-3x faster on CPUs with AVX512-BF16/AMX, master weights stay fp32
    compile: bool = True  # torch.compile of the training step (needs a C compiler)
    seed: int = 1234
    threads: int = 2


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _digest(root: Path, path: Path) -> bytes:
    return hashlib.sha1(path.relative_to(root).as_posix().encode()).digest()


def corpus_files(root: Path) -> tuple[list[Path], list[Path]]:
    """Split the standard library's modules into (training, held-out), deterministically."""
    train, held = [], []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in EXCLUDED_TOP or EXCLUDED_ANY.intersection(rel.parts[:-1]):
            continue
        if rel.as_posix() in EXCLUDED_FILES:
            continue
        (held if _digest(root, path)[0] % HELD_OUT_MODULO == 0 else train).append(path)
    return train, held


def validation_split(root: Path, train: list[Path]) -> tuple[list[Path], list[Path]]:
    """Set a few training modules aside to watch for overfitting without touching the held-out set."""
    fit, val = [], []
    for path in train:
        (val if _digest(root, path)[1] % VALIDATION_MODULO == 0 else fit).append(path)
    return fit, val


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def train_tokenizer(files: list[Path], vocab_size: int, out_dir: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        (read_text(p) for p in files),
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        show_progress=False,
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS)
    tok.model_max_length = 10**9
    tok.save_pretrained(out_dir)
    return tok


def encode_corpus(tok, files: list[Path]) -> np.ndarray:
    ids: list[int] = []
    for p in files:
        ids.extend(tok(read_text(p))["input_ids"])
        ids.append(tok.eos_token_id)
    return np.asarray(ids, dtype=np.int32)


def space_split_table(tok) -> dict[int, np.ndarray]:
    """For every token that is a space and then a word (" name", " ="), the ids of " " + "name".

    GPT-2's pre-tokenizer glues a space to the word after it, so a prompt that ends in a space
    ("def ") ends in a lone " " token that training text only shows before another space (the
    "x = 1  # comment" pattern): greedy continuations then fall into comment loops. Showing the
    model a small share of words in the split form teaches it what follows a lone space.
    """
    space = tok.convert_tokens_to_ids(BYTE_SPACE)
    table = {}
    for token, i in tok.get_vocab().items():
        if len(token) > 1 and token[0] == BYTE_SPACE and token[1] not in BYTE_WHITESPACE:
            rest = tok.convert_tokens_to_string([token])[1:]
            table[i] = np.asarray([space, *tok(rest, add_special_tokens=False)["input_ids"]], dtype=np.int32)
    return table


def split_spaces(ids: np.ndarray, table: dict[int, np.ndarray], rate: float, seed: int) -> np.ndarray:
    """Replace a random share `rate` of the table's tokens by their split form (same text, more tokens)."""
    if rate <= 0:
        return ids
    rng = np.random.default_rng(seed)
    picked = np.flatnonzero(np.isin(ids, np.fromiter(table, dtype=np.int32)) & (rng.random(len(ids)) < rate))
    parts, last = [], 0
    for i in picked:
        parts += [ids[last:i], table[int(ids[i])]]
        last = i + 1
    parts.append(ids[last:])
    return np.concatenate(parts)


def build_model(s: Settings, vocab: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(s.seed)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=max(512, s.context),
        n_embd=s.n_embd,
        n_layer=s.n_layer,
        n_head=s.n_head,
        resid_pdrop=s.dropout,
        embd_pdrop=s.dropout,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg)


def lr_at(step: int, s: Settings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    frac = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def nats_per_token(model, ids: np.ndarray, context: int, bf16: bool = False) -> float:
    """Mean loss over every token, each scored once with at least context/2 tokens of history."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    stride = context // 2
    total_nats = 0.0
    x = torch.from_numpy(ids.astype(np.int64))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        start = 0
        while start < len(x) - 1:
            lo = max(0, start - (context - stride)) if start else 0
            window = x[lo : min(len(x), start + stride + 1)]
            logits = model(window[None, :-1]).logits[0].float()
            nll = F.cross_entropy(logits, window[1:], reduction="none")
            total_nats += nll[start - lo :].sum().item()
            start += stride
    model.train(was_training)
    return total_nats / (len(x) - 1)


def lzma_bits_per_byte(data: bytes) -> float:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) * 8 / len(data)


def evaluate(model, tok, held: list[Path], context: int) -> dict:
    """Held-out bits per UTF-8 byte (the end-of-text separators are scored but have no bytes)."""
    raw = "".join(read_text(p) for p in held).encode("utf-8")
    ids = encode_corpus(tok, held)
    total_nats = nats_per_token(model, ids, context) * (len(ids) - 1)
    bpb = total_nats / math.log(2) / len(raw)
    return {
        "held_out_files": len(held),
        "held_out_bytes": len(raw),
        "held_out_tokens": int(len(ids)),
        "bits_per_byte": round(bpb, 4),
        "lzma_bits_per_byte": round(lzma_bits_per_byte(raw), 4),
        "held_out_loss_nats_per_token": round(total_nats / len(ids), 4),
    }


SAMPLE_PROMPTS = ("def ", "class ", "import ", "    for ")


def greedy_samples(model, tok, prompts=SAMPLE_PROMPTS) -> dict[str, str]:
    import torch

    out = {}
    with torch.inference_mode():
        for p in prompts:
            ids = tok(p, return_tensors="pt")["input_ids"]
            gen = model.generate(ids, max_new_tokens=60, do_sample=False, pad_token_id=tok.eos_token_id)
            out[p] = tok.decode(gen[0])
    return out


def write_card(out: Path, s: Settings, metrics: dict, train_info: dict, samples: dict[str, str]) -> None:
    lines = [
        "---",
        "license: psf-2.0",
        "library_name: transformers",
        "tags: [gpt2, tokentui, demo]",
        "---",
        "# tokentui demo model",
        "",
        "A small GPT-2-architecture causal language model trained from scratch by",
        "`tools/train_demo_model.py` on the Python standard library's own source code, so that",
        "tokentui works on a machine with no network and no GPU. It writes Python-looking code; it is",
        "a demonstration model, not a useful assistant.",
        "",
        "## Corpus",
        "",
        f"- Python {train_info['python']} standard library (`{train_info['stdlib']}`), `*.py` files.",
        "- Left out: test folders (`test/`, `tests/`, `idle_test/`), generated data (`encodings/`",
        "  codec tables, `pydoc_data/`, `html/entities.py`), `ensurepip/`, `site-packages/`.",
        f"- Split: a module is held out when the first byte of SHA-1 of its relative path is divisible by {HELD_OUT_MODULO};",
        f"  of the rest, a module whose second byte is divisible by {VALIDATION_MODULO} only watches for overfitting.",
        f"- Training: {train_info['train_files']} files, {train_info['train_bytes']:,} bytes, {train_info['train_tokens']:,} tokens"
        f" ({train_info['split_tokens']:,} more from words also shown split after a space).",
        f"- Validation: {train_info['validation_files']} files; the shipped weights are those of step {train_info['best_step']}"
        f" of {s.steps}, where validation loss was lowest ({train_info['best_validation_loss']} nats/token).",
        f"- Held out: {metrics['held_out_files']} files, {metrics['held_out_bytes']:,} bytes, {metrics['held_out_tokens']:,} tokens.",
        "- License of the corpus: PSF License Agreement (Python Software Foundation License).",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(asdict(s), indent=2),
        "```",
        "",
        f"Parameters: {train_info['parameters']:,}. Tokenizer: byte-level BPE trained with the",
        "`tokenizers` library on the training split only. Weights stored as float16 safetensors.",
        f"Training saw {train_info['tokens_seen']:,} tokens ({train_info['tokens_seen'] / train_info['train_tokens']:.1f} epochs).",
        "",
        "## Results (held-out modules, measured by `tools/train_demo_model.py --eval-only`)",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| bits per byte | {metrics['bits_per_byte']} |",
        f"| lzma (xz -9e) bits per byte, same text | {metrics['lzma_bits_per_byte']} |",
        f"| loss (nats per token) | {metrics['held_out_loss_nats_per_token']} |",
        f"| final training loss (nats per token) | {train_info['final_train_loss']} |",
        f"| training time | {train_info['train_seconds'] / 60:.1f} min on {train_info['machine']} |",
        "",
        "## Greedy samples",
        "",
    ]
    for p, text in samples.items():
        lines += [f"Prompt `{p!r}`:", "", "```python", text, "```", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "training.json").write_text(
        json.dumps({"settings": asdict(s), "metrics": metrics, "train": train_info}, indent=2) + "\n",
        encoding="utf-8",
    )


def save_model(model, out: Path) -> None:
    import torch
    from transformers import GPT2LMHeadModel

    half = GPT2LMHeadModel(model.config)
    half.load_state_dict(model.state_dict())
    half.config.resid_pdrop = half.config.embd_pdrop = 0.0  # inference needs no dropout settings
    half.to(torch.float16).save_pretrained(out, safe_serialization=True)


def load_data(tok, files: list[Path], path: Path, s: Settings | None = None) -> np.ndarray:
    """Encode files once and cache the ids (optionally with the space-split augmentation)."""
    if path.exists():
        return np.load(path, allow_pickle=False)
    data = encode_corpus(tok, files)
    if s is not None:
        data = split_spaces(data, space_split_table(tok), s.space_split, s.seed)
    np.save(path, data, allow_pickle=False)
    return data


def make_step(model, s: Settings):
    """The loss of one batch: bf16 autocast and torch.compile when asked for."""
    import torch
    import torch.nn.functional as F

    def step(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
            logits = model(batch[:, :-1]).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))

    return torch.compile(step) if s.compile else step


def train(s: Settings, work: Path, out: Path) -> None:
    import torch

    torch.set_num_threads(s.threads)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    root = stdlib_root()
    train_files, held = corpus_files(root)
    fit_files, val_files = validation_split(root, train_files)
    print(
        f"corpus: {len(fit_files)} training files, {len(val_files)} validation, {len(held)} held out (from {root})",
        flush=True,
    )

    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tok_dir)
    else:
        t0 = time.time()
        tok = train_tokenizer(fit_files, s.vocab_size, tok_dir)
        print(f"tokenizer trained in {time.time() - t0:.0f}s", flush=True)
    plain = load_data(tok, fit_files, work / "train_ids.npy")
    data = load_data(tok, fit_files, work / f"train_ids_split{s.space_split}.npy", s)
    val = load_data(tok, val_files, work / "val_ids.npy")[:VALIDATION_TOKENS]
    print(f"training tokens: {len(plain):,} (+{len(data) - len(plain):,} split), validation {len(val):,}", flush=True)

    model = build_model(s, len(tok))
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, betas=(0.9, 0.95), weight_decay=s.weight_decay)
    ckpt = work / "checkpoint.pt"
    step, elapsed, losses, val_losses = 0, 0.0, [], []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        losses, val_losses = list(state["losses"]), list(state["val_losses"])
        print(f"resumed at step {step}", flush=True)
    else:
        torch.manual_seed(s.seed)

    model.train()
    loss_of = make_step(model, s)
    gen = np.random.default_rng(s.seed)
    # Draw all batch offsets up front from the seed so a resumed run sees the same batches.
    offsets = gen.integers(0, len(data) - s.context - 1, size=(s.steps, s.batch_size))
    t_last = time.time()
    while step < s.steps:
        idx = offsets[step]
        batch = torch.from_numpy(np.stack([data[i : i + s.context + 1] for i in idx]).astype(np.int64))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s)
        loss = loss_of(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 200 == 0 or step == s.steps:
            val_losses.append([step, round(nats_per_token(model, val, s.context, bf16=s.bf16), 4)])
            if val_losses[-1][1] <= min(v for _, v in val_losses):  # keep the weights that generalise best
                torch.save(model.state_dict(), work / "best.tmp")
                os.replace(work / "best.tmp", work / "best.pt")
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if step % 25 == 0 or step == s.steps:
            recent = sum(losses[-25:]) / len(losses[-25:])
            eta = elapsed / step * (s.steps - step)
            shown = f" validation {val_losses[-1][1]:.3f}" if val_losses and val_losses[-1][0] == step else ""
            print(
                f"step {step}/{s.steps} loss {recent:.3f}{shown} lr {lr_at(step, s):.2e} "
                f"elapsed {elapsed / 60:.1f} min eta {eta / 60:.1f} min",
                flush=True,
            )
        if step % 200 == 0 or step == s.steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                    "elapsed": elapsed,
                    "losses": losses,
                    "val_losses": val_losses,
                },
                tmp,
            )
            os.replace(tmp, ckpt)

    best_step, best_loss = min(val_losses, key=lambda sv: (sv[1], -sv[0]))
    if best_step != s.steps:
        print(f"using the weights of step {best_step} (lowest validation loss {best_loss})", flush=True)
        model.load_state_dict(torch.load(work / "best.pt", weights_only=True))
    tok.save_pretrained(out)
    save_model(model, out)
    train_info = {
        "python": platform.python_version(),
        "stdlib": str(root),
        "train_files": len(fit_files),
        "train_bytes": sum(len(read_text(p).encode()) for p in fit_files),
        "train_tokens": int(len(plain)),
        "split_tokens": int(len(data) - len(plain)),
        "tokens_seen": s.steps * s.batch_size * s.context,
        "validation_files": len(val_files),
        "validation_losses": val_losses,
        "final_validation_loss": val_losses[-1][1],
        "best_step": best_step,
        "best_validation_loss": best_loss,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_train_loss": round(sum(losses[-100:]) / len(losses[-100:]), 4),
        "train_seconds": round(elapsed, 1),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU, {s.threads} torch threads",
    }
    (work / "train_info.json").write_text(json.dumps(train_info, indent=2))
    evaluate_and_card(s, out, train_info)


def evaluate_and_card(s: Settings, out: Path, train_info: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(s.threads)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    _, held = corpus_files(stdlib_root())
    t0 = time.time()
    metrics = evaluate(model, tok, held, s.context)
    print(f"evaluation ({time.time() - t0:.0f}s): {metrics}", flush=True)
    samples = greedy_samples(model, tok)
    for p, t in samples.items():
        print(f"--- {p!r}\n{t}", flush=True)
    write_card(out, s, metrics, train_info, samples)


def _flag(ap: argparse.ArgumentParser, name: str, value) -> None:
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool):
        ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
    else:
        ap.add_argument(flag, type=type(value), default=value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the finished model goes")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="checkpoints and caches")
    ap.add_argument("--eval-only", action="store_true", help="measure the model in --out, rewrite its card")
    for f in fields(Settings):
        _flag(ap, f.name, getattr(Settings(), f.name))
    args = ap.parse_args(argv)
    s = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    if args.eval_only:
        info = json.loads((args.out / "training.json").read_text())
        evaluate_and_card(Settings(**info["settings"]), args.out, info["train"])
    else:
        train(s, args.work_dir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
