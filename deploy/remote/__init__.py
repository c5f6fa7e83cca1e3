"""The deploying machine's side of the wire: targets (local, SSH, kept), the keeper, host-key trust
and the shape checks every host reply passes."""
