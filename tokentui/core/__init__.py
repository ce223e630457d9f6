"""Records and pure computations on them: numpy and the standard library only (no torch, no textual).

Replay, export and every summary run on this layer alone, so they start fast and work where torch
is not installed. Import the modules themselves (`tokentui.core.run`, …): this package does not
import them for you, so the light ones (`display`, `params`) never load numpy.
"""
