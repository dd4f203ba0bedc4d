"""The sandbox crate's C ABI (libsluice_sandbox.so, sandbox/src/lib.rs),
through ctypes. Every call returns 0 or more on success and -errno on
failure; `check` turns a failure into OSError."""

import ctypes
import os


class Native:
    """The sandbox crate's C ABI (libsluice_sandbox.so, sandbox/src/lib.rs)."""

    def __init__(self, path, abi_version):
        lib = ctypes.CDLL(path, use_errno=True)
        c = ctypes
        sigs = {
            "sluice_abi_version": [],
            "sluice_die_with_parent": [c.c_int],
            "sluice_isolate": [c.c_uint32, c.c_uint32],
            "sluice_expose": [c.c_char_p, c.c_size_t, c.c_uint32],
            "sluice_enter": [c.c_char_p, c.c_size_t, c.c_uint64, c.c_int64],
            "sluice_set_rlimits": [c.c_uint64] * 6,
            "sluice_landlock_abi": [],
            "sluice_landlock_kernel_abi": [],
            "sluice_apply_landlock": [c.c_char_p, c.c_size_t],
            "sluice_install_sigsys_reporter": [c.c_int],
            "sluice_apply_seccomp": [c.c_char_p, c.c_size_t, c.c_int],
        }
        for name, args in sigs.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = c.c_int
        if lib.sluice_abi_version() != abi_version:
            raise RuntimeError("libsluice_sandbox ABI mismatch")
        self.lib = lib

    def check(self, what, rc):
        if rc < 0:
            raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
        return rc

    def die_with_parent(self, expected_parent):
        self.check("prctl(PR_SET_PDEATHSIG)", self.lib.sluice_die_with_parent(expected_parent))

    def isolate(self, id_base, id_count):
        """0: user + network + mount namespaces, 1: network + mount only."""
        return self.check(
            "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS)", self.lib.sluice_isolate(id_base, id_count)
        )

    def expose(self, spec, uid):
        data = spec.encode()
        return self.check("expose", self.lib.sluice_expose(data, len(data), uid))

    def enter(self, scratch, scratch_bytes, uid):
        data = scratch.encode()
        self.check("scratch tmpfs and uid", self.lib.sluice_enter(data, len(data), scratch_bytes, uid))

    def set_rlimits(self, cpu_s, address_space, nproc, nofile, fsize):
        self.check("setrlimit", self.lib.sluice_set_rlimits(cpu_s, address_space, nproc, nofile, fsize, 0))

    def landlock_abi(self):
        return self.lib.sluice_landlock_abi()

    def landlock_kernel_abi(self):
        return self.lib.sluice_landlock_kernel_abi()

    def apply_landlock(self, spec):
        data = spec.encode()
        return self.check("landlock", self.lib.sluice_apply_landlock(data, len(data)))

    def install_sigsys_reporter(self, fd):
        self.check("sigaction(SIGSYS)", self.lib.sluice_install_sigsys_reporter(fd))

    def apply_seccomp(self, bpf, pid):
        self.check("seccomp", self.lib.sluice_apply_seccomp(bpf, len(bpf), pid))
