"""sre-mini's test kit: the Python the checks and drills share (the drills on the real cluster and their API-server
client, the one HTTP response reader and its clients), and the Python the check scripts would otherwise carry inline
(the supply-chain file edits in supply_chain, the validator answers in validators).

Run modules as `PYTHONPATH=tools python3 -m srekit.<module>` from the repository root; the check scripts use
`srekit MODULE ...` from scripts/lib.sh. Only PyYAML is needed (the check scripts install it with yamllint);
srekit.validators also needs kubernetes-validate, which check-k8s.sh installs.
"""
