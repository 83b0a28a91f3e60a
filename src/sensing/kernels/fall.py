"""Fall: an impact followed by lying still, on a wristband's peak acceleration magnitude.

Per device: an impact is a reading of at least `impact_g`; a later impact restarts the watch.
Readings within [still_low, still_high] are still; anything else (walking, getting up) ends
the still spell. The fall is confirmed at the reading that completes `still_ms` of still
readings, counted from the first of them, no later than `window_ms` after the impact; the
level then stays 1 until the detector's owner clears the device. A reading older than the
device's newest one is skipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fall_events(
    dev: np.ndarray, ts: np.ndarray, val: np.ndarray,
    impact_g: float, still_low: float, still_high: float, still_ms: int, window_ms: int,
    last_ts: np.ndarray, impact_ts: np.ndarray, impact_val: np.ndarray,
    still_since: np.ndarray, level: np.ndarray,
    out_row: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray, out_signal: np.ndarray,
    progress: np.ndarray,
) -> int:
    """Write one output per confirmed fall (level 1, onset = the impact, signal = its peak);
    return their count. `progress`, when not empty, gets 0 without a pending impact, 0.5 to 1
    while the still spell after one grows, 1 once the fall is confirmed."""
    n_out = 0
    track = progress.shape[0] > 0
    for i in range(dev.shape[0]):
        d, t, v = dev[i], ts[i], val[i]
        if t < last_ts[d]:
            continue
        last_ts[d] = t
        if level[d] == 0:
            if v >= impact_g:
                impact_ts[d] = t
                impact_val[d] = v
                still_since[d] = -1
            elif impact_ts[d] >= 0 and t - impact_ts[d] > window_ms:
                impact_ts[d] = -1
                still_since[d] = -1
            elif impact_ts[d] >= 0 and still_low <= v <= still_high:
                if still_since[d] < 0:
                    still_since[d] = t
                if t - still_since[d] >= still_ms:
                    level[d] = 1
                    out_row[n_out] = i
                    out_level[n_out] = 1
                    out_onset[n_out] = impact_ts[d]
                    out_signal[n_out] = impact_val[d]
                    n_out += 1
            else:
                still_since[d] = -1
        if track:
            if level[d] > 0:
                progress[i] = 1.0
            elif impact_ts[d] < 0:
                progress[i] = 0.0
            elif still_since[d] < 0 or still_ms <= 0:
                progress[i] = 0.5
            else:
                progress[i] = 0.5 + 0.5 * min(1.0, (t - still_since[d]) / still_ms)
    return n_out
