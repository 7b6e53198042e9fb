"""plugins/strategy/mitogen_linear.py keeps the code Jinja compiles for a
template on disk, for the next worker and the next run: what Ansible renders
through it is what it renders without it, and code compiled under other
settings (delimiters, backslash escaping, a filter that asks for other
arguments) is never taken for a template's own."""

from __future__ import annotations

import os

import jinja2
import pytest
from ansible._internal._templating._engine import TemplateEngine, TemplateOptions
from ansible.parsing.dataloader import DataLoader
from ansible.template import trust_as_template


@pytest.fixture(scope="module")
def strategy(strategy_plugin):
    return strategy_plugin


VARIABLES = {
    "name": "drone-1",
    "ports": [80, 443],
    "settings": {"channel": 6, "ssid": "cloudrone"},
    "path": "C:\\files",
    "nothing": None,
}
# Each with what Ansible renders: filters (plain, by full name, one Jinja
# passes the context), tests, a filter block, a header that changes the
# delimiters and one that keeps trailing spaces, a backslash in an
# expression's string (escaped by Ansible for a template, not a condition).
TEMPLATES = {
    "{{ name }}": "drone-1",
    "{{ ports | map('string') | join(',') }}": "80,443",
    "{{ settings | ansible.builtin.to_json }}": '{"channel": 6, "ssid": "cloudrone"}',
    "{{ name | upper }} {{ 'a b' | replace(' ', '-') }}": "DRONE-1 a-b",
    "{{ nothing is none }} {{ name is not defined }}": "True False",
    "{% filter upper %}{{ name }}{% endfilter %}": "DRONE-1",
    "#jinja2: variable_start_string:'[%', variable_end_string:'%]'\n[% name %] {{ name }}": (
        "drone-1 {{ name }}"
    ),
    "#jinja2: trim_blocks:False\n{% if true %}\nyes{% endif %}": "\nyes",
    "{% if true %}\nyes{% endif %}": "yes",
    '{{ "a\\nb" }}': "a\\nb",
    "{{ path }}": "C:\\files",
    "{{ range(3) | list | sum }}": 3,
}
CONDITIONS = {
    "name == 'drone-1'": True,
    "ports | length > 1 and settings.channel is number": True,
    "nothing is not none": False,
    '"a\\nb" | length == 3': True,  # no backslash escaping in a condition
}


def rendered(engine: TemplateEngine) -> tuple[list, list]:
    templates = [engine.template(trust_as_template(text)) for text in TEMPLATES]
    conditions = [engine.evaluate_conditional(trust_as_template(c)) for c in CONDITIONS]
    # the same template, with and without Ansible's backslash escaping
    templates += [
        engine.template(
            trust_as_template('{{ "c\\td" }}'),
            options=TemplateOptions(escape_backslashes=escape),
        )
        for escape in (True, False)
    ]
    return templates, conditions


def test_what_ansible_renders_through_the_cache_is_what_it_renders_without(
    strategy, tmp_path, monkeypatch
):
    engine = TemplateEngine(loader=DataLoader(), variables=VARIABLES)
    monkeypatch.setattr(strategy, "_template_cache", lambda: None)
    plain = rendered(engine)
    assert plain == ([*TEMPLATES.values(), "c\\td", "c\td"], list(CONDITIONS.values()))

    cache = strategy.TemplateCache.at(tmp_path)
    monkeypatch.setattr(strategy, "_template_cache", lambda: cache)
    assert rendered(engine) == plain and cache.hits == 0  # cold: compiled and kept
    entries = len(os.listdir(cache.folder))
    assert entries >= len(TEMPLATES) + len(CONDITIONS) + 1

    compiled = []
    monkeypatch.setattr(strategy, "_jinja_compile", lambda *a: compiled.append(a) or 1 / 0)
    again = TemplateEngine(loader=DataLoader(), variables=VARIABLES)  # as a new worker would
    assert rendered(again) == plain
    assert not compiled and cache.hits == entries  # warm: nothing compiled again


def test_other_settings_or_another_filter_never_share_code(strategy, tmp_path):
    cache = strategy.TemplateCache.at(tmp_path)
    text = "{{ 5 | probe }}"

    def plain(value):
        return f"plain {value}"

    @jinja2.pass_context
    def with_context(context, value):
        return f"context {value} {context['who']}"

    def render(env: jinja2.Environment) -> str:
        code = strategy.cached_compile(cache, jinja2.Environment.compile, env, text)
        return env.template_class.from_code(env, code, env.make_globals(None)).render(who="me")

    first, second = jinja2.Environment(), jinja2.Environment()
    first.filters["probe"], second.filters["probe"] = plain, with_context
    assert render(first) == "plain 5"
    assert render(second) == "context 5 me"  # not the code compiled for the plain filter
    assert render(first) == "plain 5" and cache.hits == 0  # the entry was the other's
    assert render(first) == "plain 5" and cache.hits == 1

    keys = {
        strategy.TemplateCache.key(cache, env, text, "template", None, None, False)
        for env in (
            first,
            second,
            jinja2.Environment(variable_start_string="[%", variable_end_string="%]"),
            jinja2.Environment(trim_blocks=True),
        )
    }
    # the filter is not part of the key: the entry keeps what it was compiled
    # against, checked when it is read (above)
    assert len(keys) == 3


def test_a_damaged_entry_is_compiled_again_and_a_shared_folder_is_not_used(strategy, tmp_path):
    cache = strategy.TemplateCache.at(tmp_path)
    env = jinja2.Environment()
    code = strategy.cached_compile(cache, jinja2.Environment.compile, env, "{{ 1 + 1 }}")
    (entry,) = cache.folder.iterdir()
    entry.write_bytes(entry.read_bytes()[:10])
    again = strategy.cached_compile(cache, jinja2.Environment.compile, env, "{{ 1 + 1 }}")
    assert cache.hits == 0 and again.co_code == code.co_code
    assert strategy.cached_compile(cache, jinja2.Environment.compile, env, "{{ 1 + 1 }}")
    assert cache.hits == 1

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert strategy.TemplateCache.at(shared) is None


def test_a_full_folder_is_emptied_and_other_versions_are_dropped(strategy, tmp_path, monkeypatch):
    cache = strategy.TemplateCache.at(tmp_path)
    old = tmp_path / "cpython-39-jinja3.0.0-ansible2.15.0"
    old.mkdir()
    monkeypatch.setattr(strategy, "_MOST", 3)
    env = jinja2.Environment()
    for n in range(3):
        strategy.cached_compile(cache, jinja2.Environment.compile, env, f"{{{{ {n} }}}}")
    cache.prune()
    assert not old.exists() and len(os.listdir(cache.folder)) == 3
    strategy.cached_compile(cache, jinja2.Environment.compile, env, "{{ 4 }}")
    cache.prune()
    assert cache.folder.is_dir() and os.listdir(cache.folder) == []
