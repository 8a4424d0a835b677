"""CodeDeploy's ECS traffic-shifting configurations, as data (the CLI lists them without loading
the simulator)."""

from harness.errors import ConfigurationError

# CodeDeploy's predefined ECS configurations: (seconds after the replacement task set is ready,
# percent of production traffic on it). CodeDeploy User Guide, "Deployment configurations on an
# Amazon ECS compute platform".
TRAFFIC: dict[str, tuple[tuple[float, int], ...]] = {
    "CodeDeployDefault.ECSAllAtOnce": ((0.0, 100),),
    "CodeDeployDefault.ECSLinear10PercentEvery1Minutes": tuple((60.0 * i, 10 * (i + 1)) for i in range(10)),
    "CodeDeployDefault.ECSLinear10PercentEvery3Minutes": tuple((180.0 * i, 10 * (i + 1)) for i in range(10)),
    "CodeDeployDefault.ECSCanary10Percent5Minutes": ((0.0, 10), (300.0, 100)),
    "CodeDeployDefault.ECSCanary10Percent15Minutes": ((0.0, 10), (900.0, 100)),
}


def traffic_steps(name: str, field: str = "traffic") -> tuple[tuple[float, int], ...]:
    """The steps of configuration ``name``; a name CodeDeploy does not have is refused, naming
    ``field`` (where the name came from)."""
    if name not in TRAFFIC:
        raise ConfigurationError(f"{field}: one of {', '.join(TRAFFIC)}", repr(name))
    return TRAFFIC[name]
