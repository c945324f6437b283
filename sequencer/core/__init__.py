"""Pure domain logic: values in, values out, ``now`` passed in.

No I/O besides reading the files it is given."""
