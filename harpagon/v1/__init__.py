"""Generated code of protos/harpagon/v1 (scripts/gen_protos.sh); do not edit."""
