"""Loading: architecture lookups on several families, token bytes, and a clear error for every
way a model can fail to load."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
import threading

import pytest
import torch

from tests.factories import drop_a_merged_token, generate_run, model_config
from tokentui.engine import jobs
from tokentui.engine.errors import EngineError, ModelLoadError
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.loading import check_config, load_model, model_name


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "gemma", "gpt_neox", "phi", "mistral"])
def test_lens_parts_reproduce_the_model_output(family):
    """final norm → unembedding applied to the last layer's pre-norm output equals the logits."""
    from transformers import AutoModelForCausalLM

    from tokentui.engine.hf.arch import lens_parts

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config(family, 97)).eval()
    parts = lens_parts(model)
    assert parts.n_layers == 3
    captured = {}
    last_layer = list(model.modules())
    layers = next(m for m in last_layer if isinstance(m, torch.nn.ModuleList))
    layers[-1].register_forward_hook(
        lambda mod, inp, out: captured.__setitem__("h", out[0] if isinstance(out, tuple) else out)
    )
    with torch.inference_mode():
        out = model(torch.tensor([[1, 2, 3, 4]]))
        lensed = parts.project(parts.normed(captured["h"][0]))
    torch.testing.assert_close(lensed, out.logits[0].float(), atol=1e-4, rtol=1e-4)


def test_token_bytes_byte_level_and_sentencepiece(loaded, tmp_path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tokentui.engine.hf.token_bytes import vocab_bytes

    lm = loaded("gpt2")
    tok = lm.tokenizer
    text = "héllo ✓ naïve"
    ids = tok(text)["input_ids"]
    assert b"".join(lm.vocab_bytes[i] for i in ids) == text.encode()
    # a SentencePiece-style vocabulary with byte fallback
    vocab = {"<unk>": 0, "▁hi": 1, "<0xC3>": 2, "<0xA9>": 3, "▁": 4, "a": 5}
    sp = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    sp.normalizer = normalizers.Replace(" ", "▁")
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    fast = PreTrainedTokenizerFast(tokenizer_object=sp, unk_token="<unk>")
    table = vocab_bytes(fast, 8)
    assert table[1] == b" hi" and table[2] == b"\xc3" and table[3] == b"\xa9" and table[0] == b"<unk>"
    assert table[7] == b"<id 7>"


def test_load_errors_are_one_clear_line(tmp_path, model_dirs):
    cases = {
        "./no/such/dir": "no such folder",
        # (no Hub id: two slashes, "..", a space — they were told of the network and the cache)
        "no/such/dir": "^no such folder: no/such/dir$",
        "models/../x": "^no such folder",
        "my model": "^no such folder",
        str(tmp_path): "not a model folder",
        "nobody-xyz/not-a-model-123": "offline",
        "": "no model",
    }
    for spec, expect in cases.items():
        with pytest.raises(ModelLoadError, match=expect) as info:
            load_model(spec)
        assert "\n" not in str(info.value)
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(
        json.dumps(
            {
                "model_type": "mything",
                "architectures": ["MyThing"],
                "auto_map": {
                    "AutoConfig": "configuration_mything.MyConfig",
                    "AutoModelForCausalLM": "modeling_mything.MyThing",
                },
            }
        )
    )
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_model(str(remote))
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model(str(model_dirs["gpt2"]), dtype="float8")


@pytest.mark.parametrize(
    "value, expect",
    [
        (-1, r"its configuration gives it no layers \(-1\)"),
        ("2", "its config.json is not valid: .*n_layer.*expected int"),
    ],
)
def test_a_config_value_of_the_wrong_kind_is_one_line(model_dirs, tmp_path, value, expect):
    """A config.json whose layer count is −1 or the string "2": "unexpected ValueError: negative
    dimensions" and "unexpected StrictDataclassFieldValidationError … a bug in tokentui"."""
    folder = tmp_path / "m"
    shutil.copytree(model_dirs["gpt2"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["n_layer"] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=expect) as info:
        load_model(str(folder))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "template, kind",
    [
        ("{{ raise_exception('boom') }}", "TemplateError: boom"),
        ("{{ ''.__class__.__mro__ }}", "SecurityError"),
        ("{% for i in range(100000000) %}x{% endfor %}", "OverflowError"),
    ],
)
def test_a_chat_template_that_fails_is_one_line(model_dirs, tmp_path, template, kind):
    """The chat template comes with the model: one that raises, that the sandbox stops, or that
    overflows was "unexpected TemplateError … a bug in tokentui"."""
    folder = tmp_path / "m"
    shutil.copytree(model_dirs["gpt2"], folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)  # (transformers 5 saves the template there)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    backend = HFBackend(load_model(str(folder), chat=True), lens_chunk=0)
    with pytest.raises(EngineError, match="the model's chat template failed on this prompt") as info:
        backend.encode_prompt("hi", chat=True)
    assert kind in str(info.value) and "\n" not in str(info.value)


def _in_time(work, seconds: float, what: str) -> None:
    """Run `work` in a daemon thread: a regression that blocks fails the test after `seconds`
    instead of hanging the suite."""
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), f"{what} after {seconds:.0f} s"


def _copy_with(model_dirs, tmp_path, **config_changes):
    folder = tmp_path / "m"
    shutil.copytree(model_dirs["gpt2"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


def test_weights_that_lack_tensors_are_refused(model_dirs, tmp_path):
    """A checkpoint without block 1's tensors loaded, block 1 random, and wrote noise without a word."""
    from safetensors.numpy import load_file, save_file

    folder = _copy_with(model_dirs, tmp_path)
    weights = folder / "model.safetensors"
    tensors = {k: v for k, v in load_file(weights).items() if ".h.1." not in k}
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(
        ModelLoadError, match=r"its weights lack \d+ of the model's tensors \(transformer\.h\.1\."
    ) as info:
        load_model(str(folder))
    assert "\n" not in str(info.value)


def test_weights_of_another_shape_are_refused_naming_the_tensor(model_dirs, tmp_path):
    """A vocabulary 10 larger in config.json than in the weights: "You set ignore_mismatched_sizes to
    False … For details look at the above report!", a report tokentui's quieted log never showed."""
    vocab = json.loads((model_dirs["gpt2"] / "config.json").read_text())["vocab_size"]
    folder = _copy_with(model_dirs, tmp_path, vocab_size=vocab + 10)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder))
    assert str(info.value).startswith(
        f"{folder}: its weights do not fit its config.json: transformer.wte.weight is [{vocab}, "
    ) and f"[{vocab + 10}, " in str(info.value)


@pytest.mark.parametrize("layers", [200, 1_000_000_000])
def test_a_config_with_more_layers_than_the_weights_is_refused_before_they_load(model_dirs, tmp_path, layers):
    """n_layer 200 over a 2-block checkpoint generated with 198 random blocks (a trial); a billion built modules
    for minutes, memory growing, until killed."""
    folder = _copy_with(model_dirs, tmp_path, n_layer=layers)
    said: list[str] = []
    out: list[BaseException] = []

    def load() -> None:
        try:
            load_model(str(folder), progress=said.append)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            out.append(e)

    _in_time(load, 60, "still loading")
    [error] = out
    assert isinstance(error, ModelLoadError)
    held = json.loads((model_dirs["gpt2"] / "config.json").read_text())["n_layer"]
    assert str(error) == (f"{folder}: its config.json gives it {layers:,} layers, but its weights hold {held}: "
                          "a config.json from another model, or damaged weights")  # fmt: skip
    assert not any(m.startswith("loading weights") for m in said)


def test_the_layer_check_reads_only_the_weights_and_survives_hostile_ones(model_dirs, tmp_path):
    """A FIFO named *.safetensors beside the weights blocked the check for good (transformers never
    opens it); a shard index nested 200,000 deep crashed it (RecursionError)."""
    folder = _copy_with(model_dirs, tmp_path)
    os.mkfifo(folder / "adapter.safetensors")
    out: list = []
    _in_time(lambda: out.append(load_model(str(folder))), 60, "the load blocked on the FIFO")
    assert out[0].n_layers >= 1
    (folder / "adapter.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text("[" * 200_000 + "]" * 200_000)
    assert load_model(str(folder)).n_layers >= 1  # (transformers reads model.safetensors; the check said nothing)


def _with_template(model_dirs, tmp_path, template: str) -> HFBackend:
    folder = tmp_path / "m"
    shutil.copytree(model_dirs["gpt2"], folder)
    (folder / "chat_template.jinja").write_text(template)
    return HFBackend(load_model(str(folder), chat=True), lens_chunk=0)


def test_a_chat_template_that_loops_for_hours_is_stopped(model_dirs, tmp_path, monkeypatch):
    """10^10 empty loop turns: the render never ended, and nothing could stop the thread running it
    (the explorer's job, a command's Ctrl-C waited on it)."""
    from tokentui.engine.hf import chat_template

    backend = _with_template(
        model_dirs, tmp_path, "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    monkeypatch.setattr(chat_template, "RENDER_SECONDS", 0.5)
    errors: list[BaseException] = []

    def encode() -> None:
        before = sys.gettrace()  # (a coverage tool's or debugger's, or None)
        try:
            backend.encode_prompt("hi", chat=True)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            errors.append(e)
        errors.append(AssertionError("the trace function stayed")) if sys.gettrace() is not before else None

    _in_time(encode, 30, "the chat template still renders")
    [error] = errors
    assert isinstance(error, EngineError)
    assert str(error) == "the model's chat template did not finish in 0.5 s on this prompt; try without --chat"
    assert backend.encode_prompt("hi")[0]  # and the backend still works


def test_a_chat_template_that_writes_megabytes_is_refused_before_tokenizing(model_dirs, tmp_path):
    backend = _with_template(model_dirs, tmp_path, "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
    with pytest.raises(EngineError, match=r"the chat template's text is 10,000,000 bytes: far more than"):
        backend.encode_prompt("hi", chat=True)


def test_bad_requests_to_a_session(loaded):
    from tokentui.core.params import GenerationSettings, RunError
    from tokentui.core.run import SamplingParams

    lm = loaded("gpt2")
    s = HFBackend(lm)
    with pytest.raises(EngineError, match="empty"):
        s.encode_prompt("   ")
    with pytest.raises(RunError, match="more than the vocabulary"):
        s.new_run("x", GenerationSettings(k=lm.vocab_size + 1), None)
    run, _ = generate_run(s, "def f():", SamplingParams(max_new_tokens=3), k=3)
    with pytest.raises(EngineError, match="out of range"):
        list(s.fork(run, 0, run.length(0) + 5, [1], SamplingParams()))
    with pytest.raises(EngineError, match="outside the vocabulary"):
        list(s.fork(run, 0, 2, [lm.vocab_size], SamplingParams()))
    chat = s.encode_prompt("hi", chat=True)
    assert chat[1] is not None and "<|assistant|>" in lm.tokenizer.decode(chat[0])


def test_model_name_and_tokenizer_id_hold_no_local_path(loaded, model_dirs):
    ids = set()
    for family in ("gpt2", "llama"):
        lm = loaded(family)
        assert lm.model_name == model_dirs[family].name  # the folder's name, not its path
        assert re.fullmatch(r"\w+ sha256:[0-9a-f]{12}", lm.tokenizer_id), lm.tokenizer_id
        assert lm.tokenizer_id.split()[0] == type(lm.tokenizer).__name__
        for value in (lm.model_name, lm.tokenizer_id):
            assert "/" not in value and str(model_dirs[family].parent) not in value
        ids.add(lm.tokenizer_id)
    assert len(ids) == 1  # the same tokenizer files in both folders: the same id


def test_tokenizer_id_follows_the_tokenizer_files(model_dirs, tmp_path, loaded):
    copy = tmp_path / "relative-copy"
    shutil.copytree(model_dirs["gpt2"], copy)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{{ messages[0].content }}"
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    lm = load_model(str(copy))
    assert lm.model_name == "relative-copy"
    assert lm.tokenizer_id != loaded("gpt2").tokenizer_id


def test_tokenizer_id_is_the_same_however_the_tokenizer_was_loaded_before_saving(model_dirs, tmp_path):
    """save_pretrained writes how the tokenizer was loaded (local_files_only true under
    HF_HUB_OFFLINE=1, false without it) into tokenizer_config.json: SmolLM2's converted folder got
    another id on a machine online than offline. The id leaves those keys out, and still follows
    the rest of the file."""
    from transformers import AutoTokenizer

    from tokentui.engine.hf.loading import LOAD_TIME_KEYS, tokenizer_id

    ids = []
    for offline in (True, False):
        tok = AutoTokenizer.from_pretrained(str(model_dirs["gpt2"]), local_files_only=offline)
        folder = tmp_path / f"saved-{offline}"
        tok.save_pretrained(folder)
        written = json.loads((folder / "tokenizer_config.json").read_text())
        written["local_files_only"] = offline  # (what the library writes, whichever version it is)
        (folder / "tokenizer_config.json").write_text(json.dumps(written, indent=3))
        ids.append(tokenizer_id(tok, folder))
    assert ids[0] == ids[1]
    for key in LOAD_TIME_KEYS:  # a library that writes none of them, spacing the file its own way
        written.pop(key, None)
    (folder / "tokenizer_config.json").write_text(json.dumps(written, sort_keys=True))
    assert tokenizer_id(tok, folder) == ids[0]
    written["model_max_length"] = 77  # a real difference counts
    (folder / "tokenizer_config.json").write_text(json.dumps(written))
    assert tokenizer_id(tok, folder) != ids[0]


def test_a_model_folder_reached_through_a_link_is_named_as_the_user_named_it(model_dirs, tmp_path, monkeypatch):
    link = tmp_path / "my-finetune"
    link.symlink_to(model_dirs["gpt2"])
    assert load_model(str(link)).model_name == "my-finetune"  # (it was the target's name)
    monkeypatch.chdir(tmp_path)
    assert model_name("./my-finetune/", "my-finetune/") == "my-finetune"
    assert model_name("my-finetune/..", "my-finetune/..") == model_dirs["gpt2"].parent.name  # (where it leads)


def test_model_name_of_the_demo_and_of_a_hub_id():
    assert model_name("demo", "/anywhere/demo-model") == "demo"
    assert model_name("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    assert model_name("./models/mine/", "models/mine") == "mine"


def test_check_config_sees_the_vocabulary_without_the_weights(model_dirs, tmp_path):
    from tokentui.core.params import RunError

    weightless = tmp_path / "weightless"
    shutil.copytree(model_dirs["gpt2"], weightless, ignore=shutil.ignore_patterns("*.safetensors"))
    seen = []
    check_config(str(weightless), seen.append)
    assert seen == [600]

    def refuse(vocab_size):
        raise RunError(f"refused {vocab_size}")

    with pytest.raises(RunError, match="refused 600"):
        check_config(str(weightless), refuse)
    # loading it does read the (missing) weights, and says so, also offline (the tests run with
    # HF_HUB_OFFLINE=1, which used to turn this into "not in the Hugging Face cache … give a local folder")
    with pytest.raises(ModelLoadError, match=r"its folder holds no weights file \(model\.safetensors") as e:
        load_model(str(weightless))
    assert "offline" not in str(e.value) and "cache" not in str(e.value)
    with pytest.raises(ModelLoadError, match="no such folder"):
        check_config("./no/such/dir", seen.append)


def test_no_network_check_is_quick_and_names_the_host(monkeypatch):
    from huggingface_hub import constants

    from tokentui.engine.hf.loading import hub_unreachable

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    hub_unreachable.cache_clear()
    try:
        assert hub_unreachable(timeout=2.0) == "127.0.0.1"
    finally:
        hub_unreachable.cache_clear()


class _PlantsAFile:
    """A pickle that, if unpickled without `weights_only`, would create a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _broken_copy(model_dirs, tmp_path, name="broken"):
    d = tmp_path / name
    shutil.copytree(model_dirs["gpt2"], d)
    return d


def _one_line_error(spec: str, expect: str) -> str:
    with pytest.raises(ModelLoadError, match=expect) as info:
        load_model(spec)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_truncated_safetensors_is_reported_as_damaged(model_dirs, tmp_path):
    d = _broken_copy(model_dirs, tmp_path)
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _one_line_error(str(d), r"the weights file model\.safetensors is damaged or truncated")
    weights.write_bytes(data[:5])  # not even a whole header
    _one_line_error(str(d), r"model\.safetensors is damaged or truncated")


def test_a_pickle_that_runs_code_is_refused_and_never_run(model_dirs, tmp_path):
    marker = tmp_path / "pwned"
    d = _broken_copy(model_dirs, tmp_path)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_PlantsAFile(marker)))
    _one_line_error(str(d), r"pytorch_model\.bin is not a plain tensor file .*was not loaded")
    assert not marker.exists()
    torch.save({"w": _PlantsAFile(marker)}, d / "pytorch_model.bin")  # the zip format torch.save writes
    _one_line_error(str(d), r"pytorch_model\.bin is not a plain tensor file .*was not loaded")
    assert not marker.exists()


def test_a_corrupt_or_unknown_config_says_so_not_offline(model_dirs, tmp_path, monkeypatch):

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = _broken_copy(model_dirs, tmp_path)
    good = (d / "config.json").read_text()
    (d / "config.json").write_text("{not json")
    msg = _one_line_error(str(d), r"config\.json of .* is not valid JSON")
    assert "cache" not in msg and "offline" not in msg
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        check_config(str(d), lambda _v: None)
    cfg = json.loads(good)
    cfg["model_type"] = "nosuchfamily"
    (d / "config.json").write_text(json.dumps(cfg))
    msg = _one_line_error(str(d), r"has model_type 'nosuchfamily', which this transformers does not know")
    assert "cache" not in msg and "offline" not in msg


def test_a_folder_without_tokenizer_files_fails_at_load(model_dirs, tmp_path):
    from tokentui.engine.hf.loading import TOKENIZER_FILES

    d = _broken_copy(model_dirs, tmp_path)
    for n in TOKENIZER_FILES:
        (d / n).unlink(missing_ok=True)
    _one_line_error(str(d), r"has no tokenizer files \(tokenizer\.json or tokenizer_config\.json")


@pytest.mark.parametrize("damage", ["a merge's token missing", "not JSON"])
def test_tokenizer_files_that_cannot_make_a_tokenizer_are_one_line_naming_them(model_dirs, tmp_path, damage):
    """A tokenizer.json that parses but whose merges name a token its vocabulary lacks made the
    tokenizers library raise a bare Exception: a crash report "a bug in tokentui", and a batch's
    other models never ran. One that is not JSON said "Expecting value", naming no file."""
    d = _broken_copy(model_dirs, tmp_path)
    path = d / "tokenizer.json"
    if damage == "not JSON":
        path.write_text("not json")
    else:
        drop_a_merged_token(d)
    _one_line_error(str(d), rf"^the tokenizer files of {re.escape(str(d))} could not be read: \S")


def test_a_model_without_an_output_embedding_is_refused_in_one_line(model_dirs, monkeypatch):
    """A remote-code model whose head transformers cannot find (get_output_embeddings() is None):
    a one-line ModelLoadError naming it, not an AttributeError (the lens's missing final norm
    turns the lens off; a missing head leaves nothing to read logits from)."""
    from transformers import GPT2LMHeadModel

    monkeypatch.setattr(GPT2LMHeadModel, "get_output_embeddings", lambda self: None)
    with pytest.raises(ModelLoadError, match="cannot find its output embedding") as e:
        load_model(str(model_dirs["gpt2"]))
    assert "\n" not in str(e.value)


def test_loading_says_it_checks_the_model_and_then_loaded_with_the_whole_time(model_dirs, monkeypatch):
    """The checks at opening run after the weights are read (SmolLM2 on 2 cores: seconds): the
    status said "loaded … in 4.1s" all through them, then another time. Now they are announced,
    and "loaded" comes once, last, after them, with the time of the whole load."""
    import time

    from tokentui.engine.backend import ModelSpec
    from tokentui.engine.hf import backend as hf_backend

    said: list[str] = []
    real = hf_backend.cached_decoding_problem

    def checked(*args, **kwargs):
        said.append("(the decoding check ran)")
        return real(*args, **kwargs)

    monkeypatch.setattr(hf_backend, "cached_decoding_problem", checked)
    t0 = time.perf_counter()
    HFBackend.load(ModelSpec(str(model_dirs["gpt2"])), progress=said.append)
    took = time.perf_counter() - t0
    folder = str(model_dirs["gpt2"])
    assert said[-3:-1] == [f"checking {folder}: decoding from its cache and the lens", "(the decoding check ran)"]
    assert [m for m in said if m.startswith("loaded")] == [said[-1]]
    seconds = float(re.fullmatch(rf"loaded {re.escape(folder)} in ([0-9.]+)s", said[-1]).group(1))
    assert said.index(f"loading weights of {folder}") < len(said) - 3  # (the weights first)
    assert abs(seconds - took) < 0.1 + 0.05 * took


def test_a_text_far_beyond_the_context_is_refused_before_it_is_tokenized(loaded):
    """A 50 MB file took `score` a minute and 6 GB before "more than the model's context": a text
    longer than the context's positions × the longest token's bytes (4× over) is refused from its
    size alone. The densest text that fits (the longest token, once per position) is not."""
    lm = loaded("gpt2")
    s = HFBackend(lm, lens_chunk=0)
    longest = max(lm.vocab_bytes, key=len)
    assert s.max_text_bytes == 4 * s.context * len(longest)
    dense = longest.decode("utf-8", "replace") * (s.context - 2)
    assert len(s.encode_text(dense)) <= s.context  # (not refused for its size: it fits)
    for encode in (s.encode_text, s.encode_prompt):  # (its size's message: not tokenized first)
        with pytest.raises(EngineError, match="far more than the model's context of"):
            encode("x" * (s.max_text_bytes + 1))
    # (a scored or compared text is named so: a trial's `compare --file` was told "the prompt is …")
    too_long = "x" * (s.max_text_bytes + 1)
    with pytest.raises(EngineError, match=f"^the text is {len(too_long):,} bytes: far more than"):
        jobs.drive(jobs.Score(s, too_long, 3))


@pytest.mark.parametrize(
    "config",
    [
        lambda T: T.T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8, vocab_size=600),
        lambda T: T.BartConfig(
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            vocab_size=600,
        ),
    ],
    ids=["t5", "bart"],
)
def test_an_encoder_decoder_model_is_refused_before_its_weights_load(tokenizer_dir, tmp_path, config):
    """A trial's T5 folder was refused once its weights had loaded ("not a causal language
    model"), its BART folder as damaged weights (transformers maps it to its decoder alone)."""
    import shutil

    import transformers as T

    cfg = config(T)
    model = T.AutoModelForSeq2SeqLM.from_config(cfg)
    model.save_pretrained(tmp_path / "m")
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, tmp_path / "m" / f.name)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not read")  # (read, it would be called damaged)
    msg = _one_line_error(str(tmp_path / "m"), "is an encoder-decoder model")
    assert "ForConditionalGeneration" in msg
    with pytest.raises(ModelLoadError, match="is an encoder-decoder model"):
        check_config(str(tmp_path / "m"), lambda _v: None)


def test_a_decoder_saved_alone_is_read_though_its_configuration_says_encoder_decoder(tokenizer_dir, tmp_path):
    """BartForCausalLM: the decoder of an encoder-decoder model, saved as a causal model."""
    import shutil

    import transformers as T

    cfg = T.BartConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=600)  # fmt: skip
    assert cfg.is_encoder_decoder
    T.BartForCausalLM(cfg).save_pretrained(tmp_path / "m")
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, tmp_path / "m" / f.name)
    lm = load_model(str(tmp_path / "m"))
    assert type(lm.model).__name__ == "BartForCausalLM"


def test_a_tokenizer_larger_than_the_model_is_said_and_its_extra_tokens_refused(model_dirs, tmp_path):
    """A trial paired a 600-id model with a 49k tokenizer: the forward failed as "index out of
    range in self". Loading says so; a text with a token past the embeddings is refused."""
    import transformers as T

    d = tmp_path / "m"
    torch.manual_seed(0)
    T.AutoModelForCausalLM.from_config(model_config("gpt2", 300)).save_pretrained(d)
    for f in model_dirs["gpt2"].iterdir():
        if f.suffix != ".safetensors" and f.name != "config.json":
            shutil.copy(f, d / f.name)
    said: list[str] = []
    lm = load_model(str(d), progress=said.append)
    assert any("its tokenizer has 600 tokens, more than its 300 embeddings" in m for m in said), said
    backend = HFBackend(lm, lens_chunk=0)
    text = "héllo wörld ünïcödé 日本語 ✓ naïve café"
    ids = lm.tokenizer(text)["input_ids"]
    assert max(ids) >= 300
    with pytest.raises(
        EngineError,
        match=f"the prompt encodes to token id {next(i for i in ids if i >= 300)}, but the model has 300 embeddings",
    ):
        backend.encode_prompt(text)
    with pytest.raises(EngineError, match="its tokenizer is not this model's"):
        backend.encode_text(text)
    assert backend.encode_text("a") == lm.tokenizer("a", add_special_tokens=False)["input_ids"]  # (a low id: read)
