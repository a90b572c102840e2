"""What other packages may import from the alert service (docs/STYLE.md, habit 10)."""

import services.alerts


def test_the_public_surface_is_small_and_exists():
    assert sorted(services.alerts.__all__) == [
        "ResealReport",
        "handlers",
        "loops",
        "reseal_all",
        "router",
        "seal_weak_secrets",
        "start_workers",
    ]
    for name in services.alerts.__all__:
        assert getattr(services.alerts, name) is not None
