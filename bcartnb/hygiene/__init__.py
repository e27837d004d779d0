"""List hygiene: who must not be mailed again, found from bounces, complaints and unsubscribes.

The suppression list itself lives in the ledger (:mod:`bcartnb.ledger.suppressions`); this
package holds what feeds it and what it feeds: reading bounce mailboxes and parsing delivery
status notifications, the one-click unsubscribe server, and the CSV that writes the list
back to B-Cart (:mod:`bcartnb.hygiene.export`).
"""

from __future__ import annotations
