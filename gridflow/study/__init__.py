"""Study building blocks: scenarios, zones, datacenters, dispatch, screening, shed allocation and rotation."""
