"""`sportello campaign run`: a CSV uploaded to a real pagopa process (PostgreSQL, RabbitMQ, GPD twin)
and followed to the end with a progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.test_cli import sportello
from tests.support.platform import Platform, start_platform

pytestmark = pytest.mark.integration
CODES = ["RSSMRA85T10A562S", "VRDLGU70A01D150D", "BNCGVN80A01D150Y"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("cli_campaign"), services=["pagopa"], twins=["gpd"],
                        gateway=False) as running:
        yield running


def write_csv(path: Path, rows: int, bad: bool) -> Path:
    lines = ["codice_fiscale;nominativo;importo;scadenza;causale"]
    lines += [f"{CODES[n % 3]};Famiglia {n};{100 + n},50;31/12/2099;TARI 2099" for n in range(1, rows + 1)]
    if bad:
        lines.append("RSSMRA85T10A562X;Famiglia bad;10;31/12/2099;TARI 2099")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_campaign_run_follows_to_the_end(platform: Platform, tmp_path: Path) -> None:
    env = {"SPORTELLO_AMQP_URI": platform.amqp_uri}
    result = sportello("campaign", "run", str(write_csv(tmp_path / "tari.csv", 6, bad=True)), "--tenant", "cremona",
                       "--poll", "0.3", env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr  # one invalid row
    assert "7 rows, 6 valid" in result.stdout
    assert "row 7: " in result.stdout and "fiscal code" in result.stdout
    assert result.stdout.rstrip().endswith("done: 6 created, 0 failed, 1 invalid")
    assert "[" + "#" * 30 + "] 6/6" in result.stderr  # the progress bar reached the end

    clean = sportello("campaign", "run", str(write_csv(tmp_path / "ok.csv", 3, bad=False)), "--tenant", "cremona",
                      "--name", "TARI 2099 saldo", "--poll", "0.3", env=env, timeout=120)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "(TARI 2099 saldo): 3 rows, 3 valid" in clean.stdout
    assert clean.stdout.rstrip().endswith("done: 3 created, 0 failed, 0 invalid")


def test_campaign_run_refuses_what_is_no_campaign(platform: Platform, tmp_path: Path) -> None:
    env = {"SPORTELLO_AMQP_URI": platform.amqp_uri}
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = sportello("campaign", "run", str(empty), "--tenant", "cremona", env=env)
    assert result.returncode == 1 and "sportello: request.invalid: the CSV is empty" in result.stderr
    missing = sportello("campaign", "run", str(tmp_path / "none.csv"), "--tenant", "cremona", env=env)
    assert missing.returncode == 78 and "no such file" in missing.stderr
