"""Run files, the run cache and exports. numpy and the standard library only (no torch, no textual).

Import the modules themselves (`tokentui.store.runfile`, `.cache`, `.header`): this package does not
import them for you, so code that needs only a header (the cache, `tokentui replay`'s first frame)
never loads numpy.
"""
