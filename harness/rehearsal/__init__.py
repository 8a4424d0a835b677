"""The rehearsal: the plan applied to moto, its task definitions run on Docker behind an ALB-like
balancer, deployed by rolling or blue/green."""
