import pytest


@pytest.fixture(scope="session")
def _quicktok_imports(tmp_path_factory):
    """One quicktok import cache for the whole session: an import takes seconds."""
    return tmp_path_factory.mktemp("quicktok-imports")


@pytest.fixture(scope="module", autouse=True)
def _user_cache(tmp_path_factory, _quicktok_imports):
    """Each test module, and every process its tests start, gets its own user cache folder, never ~/.cache.

    Only quicktok's imports are shared by the session; the select score cache starts empty in each module
    (a module's fixtures and tests may share scores, as their runs would beside one output folder).
    """
    home = tmp_path_factory.mktemp("xdg-cache")
    (home / "mosaic-it").mkdir()
    (home / "mosaic-it" / "quicktok").symlink_to(_quicktok_imports, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield


@pytest.fixture(scope="session")
def quicktok_lengths():
    from transforms.core.lengths import LengthTemplate, SampleLengths
    from transforms.core.tokens import load_counter

    return SampleLengths(load_counter("quicktok:llama3"), LengthTemplate("raw"))
