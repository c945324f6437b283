"""Pure domain logic: values in, values out, ``now`` passed in. No I/O besides reading files given."""
