"""Table tests for the pod harness's pure parts and its cgroup writes, v1 and v2, against a fake cgroupfs.

    PYTHONPATH=tools python3 -m unittest srekit.test_pod

The drills exercise the real hierarchy of the machine they run on (v1 here, v2 on GitHub runners); these tests
pin what the harness writes for each version, so the path the drills did not take is not left untested.
"""

from __future__ import annotations

import pathlib
import tempfile
import unittest
from unittest import mock

from . import pod
from .manifest import PodSpec, parse_bytes, parse_cpu


class Quantities(unittest.TestCase):
    def test_cpu(self):
        for q, want in [("500m", 0.5), ("1", 1.0), ("0.25", 0.25), (2, 2.0), ("1500m", 1.5)]:
            self.assertEqual(parse_cpu(q), want, q)

    def test_bytes(self):
        for q, want in [("256Mi", 256 << 20), ("1Gi", 1 << 30), ("128M", 128_000_000), ("64Ki", 65536), ("1000", 1000)]:
            self.assertEqual(parse_bytes(q), want, q)
        for bad in ["", "12Mb", "-1Mi", "Mi"]:
            with self.assertRaises(ValueError, msg=bad):
                parse_bytes(bad)


class Manifest(unittest.TestCase):
    def test_the_shipped_deployment(self):
        spec = PodSpec.from_manifest()
        self.assertEqual((spec.cpu_limit, spec.memory_limit), (0.5, 256 << 20))
        self.assertEqual(spec.probe("readiness").timeout_s, 1.0)
        self.assertIn("WORK_CPU_BACKLOG_MS", spec.env)
        self.assertLessEqual(spec.grace_s, 30)


class FakeCgroupfs(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self.tmp.name)
        self.patch = mock.patch.object(pod, "CGROUP_ROOT", self.root)
        self.patch.start()
        self.euid = mock.patch.object(pod.os, "geteuid", return_value=0)
        self.euid.start()

    def tearDown(self):
        self.euid.stop()
        self.patch.stop()
        self.tmp.cleanup()

    def test_v2_writes_cpu_max_and_memory_max_and_enables_controllers(self):
        (self.root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (self.root / "cgroup.subtree_control").write_text("")
        c = pod.Cgroup("sre-mini-test", 0.5, 256 << 20)
        self.assertEqual(c.version, 2)
        self.assertEqual((self.root / "cgroup.subtree_control").read_text(), "+cpu +memory")
        self.assertEqual((self.root / "sre-mini-test" / "cpu.max").read_text(), "50000 100000")
        self.assertEqual((self.root / "sre-mini-test" / "memory.max").read_text(), str(256 << 20))
        self.assertEqual(c.procs_files(), [self.root / "sre-mini-test" / "cgroup.procs"])

    def test_v1_writes_quota_period_and_limit(self):
        (self.root / "cpu").mkdir()
        (self.root / "memory").mkdir()
        c = pod.Cgroup("sre-mini-test", 1.5, 64 << 20)
        self.assertEqual(c.version, 1)
        self.assertEqual((self.root / "cpu" / "sre-mini-test" / "cpu.cfs_quota_us").read_text(), "150000")
        self.assertEqual((self.root / "cpu" / "sre-mini-test" / "cpu.cfs_period_us").read_text(), "100000")
        self.assertEqual((self.root / "memory" / "sre-mini-test" / "memory.limit_in_bytes").read_text(), str(64 << 20))

    def test_missing_hierarchy_and_leftovers_fail_loudly(self):
        with self.assertRaisesRegex(pod.HarnessError, "no usable cgroup hierarchy"):
            pod.Cgroup("sre-mini-test", 0.5, 1 << 20)
        (self.root / "cpu").mkdir()
        (self.root / "memory").mkdir()
        (self.root / "cpu" / "sre-mini-left").mkdir()
        with self.assertRaisesRegex(pod.HarnessError, "already exists"):
            pod.Cgroup("sre-mini-left", 0.5, 1 << 20)

    def test_not_root_fails_loudly(self):
        with mock.patch.object(pod.os, "geteuid", return_value=1000):
            with self.assertRaisesRegex(pod.HarnessError, "must run as root"):
                pod.Cgroup("sre-mini-test", 0.5, 1 << 20)


if __name__ == "__main__":
    unittest.main()
