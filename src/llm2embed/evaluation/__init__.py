"""Offline evaluation: STS, retrieval, classification, clustering, pair classification, the embedded Wikipedia
benchmark, a report (table, JSON, chart) and an mteb 2.x adapter.

==========================  ===========================================================================
module                      what
==========================  ===========================================================================
``sts``                     STS-B / JSONL / TSV pairs -> Spearman x 100 of cosine vs gold
``retrieval``               BEIR folders -> nDCG@10, MRR@10, Recall@100 (sentence-transformers' IR evaluator)
``classification``          logistic regression on frozen embeddings -> accuracy, macro-F1
``clustering``              k-means -> V-measure
``pair_classification``     cosine -> average precision
``wiki``                    the embedded Wikipedia benchmark (retrieval, topic classification, clustering)
``models``                  model specs: folders, Hub ids, ``smollm2-135m[:causal]``, ``minilm``
``tasks``                   ``--tasks`` names and per-task query instructions
``cache``                   per-model, per-task embedding cache
``report``                  markdown table, ``results.json``, ``report.png``
``runner``                  :func:`~llm2embed.evaluation.runner.run_eval`, what ``llm2embed eval`` calls
``mteb``                    :class:`~llm2embed.evaluation.mteb.MTEBEncoder` for ``mteb.evaluate``
==========================  ===========================================================================

>>> from llm2embed.evaluation.runner import run_eval
>>> run_eval("minilm", tasks="stsb", report_dir="out/r")                   # doctest: +SKIP
"""
