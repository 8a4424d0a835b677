"""Virtual-time models of a deployment: the ECS/CodeDeploy simulator and the shared-outage model."""
