"""kasmina_edge.ecg: the ECG data layer (numpy/scipy only; the device imports it too).

- ``types``: records, beat labels (AAMI classes), intervals, artifact mask bits
- ``synth`` + ``anomalies``: ECGSYN-style synthetic ECG with labelled rhythm/beat anomalies
- ``artifacts`` + ``scenarios``: noise at NSTDB-style SNRs, named schedules of conditions
- ``wfdb_io``: WFDB in/out (wfdb extra), MIT-BIH symbols -> AAMI, resampling
- ``qrs``: Pan-Tompkins QRS detection, batch == streaming, beat matching (Se, +P)
- ``windowing``: the preprocessing and beat windows shared by training and the runtime
- ``dataset``: beat datasets and synthetic patients for training
- ``sources``: ``EcgSource`` chunks from synthetic/WFDB/CSV, real-time pacing
- ``stats``, ``plot``: summaries (HR, HRV, classes, Se/+P) and strip plots (matplotlib extra)
"""
