"""The container's memory cgroup as the launcher reads it: v1 and v2 layouts."""

from podvirt.launcher.cgroup import MemoryCgroup, oom_killed_since, read_memory_cgroup


def _v1(root, kills: int, limit: str) -> None:
    (root / "memory").mkdir(exist_ok=True)
    (root / "memory" / "memory.oom_control").write_text(
        f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text(limit + "\n")


def test_v1_counts_kills_and_reads_the_limit(tmp_path):
    _v1(tmp_path, 0, "314572800")
    before = read_memory_cgroup(tmp_path)
    assert before == MemoryCgroup(0, 300 * 2**20)
    _v1(tmp_path, 1, "314572800")
    assert oom_killed_since(before, read_memory_cgroup(tmp_path))


def test_v1_unlimited_is_no_limit(tmp_path):
    _v1(tmp_path, 0, "9223372036854771712")
    assert read_memory_cgroup(tmp_path).limit_bytes is None


def test_v2_memory_events(tmp_path):
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert read_memory_cgroup(tmp_path) == MemoryCgroup(2, None)


def test_no_cgroup_counts_nothing_and_never_claims_an_oom(tmp_path):
    nothing = read_memory_cgroup(tmp_path)
    assert nothing == MemoryCgroup(None, None)
    assert not oom_killed_since(nothing, MemoryCgroup(3, None))
    assert not oom_killed_since(MemoryCgroup(3, None), MemoryCgroup(3, None))
