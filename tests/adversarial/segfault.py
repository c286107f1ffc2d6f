# tries: crash the interpreter with a NULL read through ctypes
# expect: crash observation (SIGSEGV); restart + replay
# outcome: crash
import ctypes

ctypes.string_at(0)
