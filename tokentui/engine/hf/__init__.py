"""The Hugging Face backend: transformers models on the local machine, with every capability
(hidden states for the lens, KV-cache forks, gradients, hooks). torch is imported here and below,
never by `tokentui.engine` itself."""
