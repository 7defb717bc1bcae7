import json
import sys

for line in sys.stdin:
    try:
        r = json.loads(line)
    except Exception:
        if line.startswith("eval") or "Error" in line or "Traceback" in line:
            print(line.rstrip()[:900])
        continue
    if r.get("final"):
        print(
            {
                k: r[k]
                for k in [
                    "steps",
                    "train_s",
                    "val_step_acc",
                    "val_step_in_scope",
                    "halt_calibrated",
                    "oracle_any_step",
                    "mean_q_sigmoid_step1",
                ]
            }
        )
    else:
        print(r)
