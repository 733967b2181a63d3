"""Mix-PEFT: parameter-efficient fine-tuning of a backbone's encoder and decoder.

One module per method (``none``, ``full``, ``layernorm``, ``bitfit``, ``lora``, ``adapter``,
``ssf``, ``vpt``, ``ia3``), each exposing ``why_not(model, part, sites, config)`` (None or the
reason it cannot act) and ``attach(...)``. ``spec`` holds the Mix-PEFT spec, the paper's
defaults and the feasible grid; ``apply`` freezes, attaches and counts; ``bundle`` saves and
loads adapters; ``merge`` folds LoRA/SSF/IA³ into the base weights. Methods read where to act
from the backbone's declared sites (:mod:`napari_petite.models.base`), never from names.

State-dict names of the added tensors (base keys never change):
``<site>.lora_A.<i>`` / ``<site>.lora_B.<i>`` (one pair per output slice), ``<site>.adapter.
{down,up}.{weight,bias}``, ``<site>.ssf.{scale,shift}``, ``<site>.ia3.scale``, and on prompt
hosts ``<host>.prompts`` or ``<host>.deep_prompts`` plus ``<host>.prompt_gate``.
"""
