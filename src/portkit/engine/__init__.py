"""Pure logic: no sockets, no subprocess, no clock reads (time is an argument)."""
