"""Quality measured with the field's own tool: lm-evaluation-harness against a launched phi3ov server.

`phi3ov eval` (and `make eval`) writes two small tasks built from the bundled text (tasks.py), starts the
server on each model folder given, runs lm-eval's `local-completions` model on it with the remote tokenizer
(/tokenizer_info, /tokenize) and prints accuracy and perplexity per folder (run.py). lm-eval lives in its own
environment (`.venv-eval`): its `datasets` needs a newer huggingface-hub than optimum-intel allows.
"""
