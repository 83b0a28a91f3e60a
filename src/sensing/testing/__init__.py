"""Testing helpers shipped as public API: the parts of a real stack as processes, traffic,
counting in the store, hostile inputs and the runs that use them.

    from sensing.testing.processes import CoreProcess        # `sensing run` as a subprocess
    from sensing.testing.traffic import Publisher, Recorder  # QoS 1 out, timestamped in
    from sensing.testing.counting import stored_readings, Tally
    from sensing.testing.hostile import hostile_inputs, issue11_corpus  # needs hypothesis
    from sensing.testing.fuzz import run_fuzz                # scripts/fuzz_core.py
    from sensing.testing.faults import FAULTS, run_fault     # scripts/fault_matrix.py

Import the submodules you need: this package imports nothing itself, so that an edge agent
started by a test (`python -m sensing.testing.edge_child`) stays free of numpy.
"""
