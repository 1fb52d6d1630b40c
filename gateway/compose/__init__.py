"""The composition: the only code that imports web, radio and printers and wires them to the
services. One module per step; each step is an async generator (set up, yield, tear down) that
`gateway.app` enters in the order of ARCHITECTURE.md §7 under a `gateway.lifecycle.Supervisor`,
which tears them down in reverse."""
