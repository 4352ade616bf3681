"""The stages a pipeline folder (`run_layout`'s `PIPELINE_*`) is made of, each reused while its config is unchanged:
what `mindhier demo` runs, its studies (`mindhier eval adaptation`) build on, and `mindhier bench decoders` trains or
reuses before it measures.

    stages.py           `Stages`: run, reuse or resume a named stage; the config sections each stage depends on
    shared_stages.py    teacher features, the encoder, the tokenizer and the stimulus tokens every decoder shares
    decoder_stages.py   the generators (one per routing and condition), the diffusion baseline and the scored rows
    demo_pipeline.py    the whole demo into one folder: data, the stages above per seed, the report

The package sits between the training loops (`train/`, which it calls) and the entry points (`cli/`, `demo/`,
`bench/`, which call it); the library imports neither.
"""
