"""The incident generator's tables: systems, assignment groups, contacts, sites, root causes, text templates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class System:
    name: str
    team: str
    weight: float
    critical: bool
    contact: str  # contact-type profile
    pairs: tuple[tuple[str, str, str, float], ...]  # (category, subcategory, assignment group, weight)
    aliases: tuple[str, ...]
    objects: tuple[str, ...]
    codes: tuple[str, ...]
    hosts: tuple[str, ...]


SYSTEMS = (
    System(
        "SAP ERP", "ERP Applications", 0.11, True, "office",
        (("Software", "Application error", "SAP Support", 0.35), ("Software", "Batch job failure", "SAP Support", 0.2),
         ("Software", "Performance", "SAP Support", 0.15), ("Access", "Authorization", "Identity & Access", 0.15),
         ("Software", "Functional question", "Service Desk", 0.15)),
        ("SAP", "SAP ERP", "S/4HANA", "SAP GUI", "ERP"),
        ("purchase order", "invoice posting", "transaction ME21N", "FB60", "goods receipt", "cost center report",
         "vendor master"),
        ("DBIF_RSQL_SQL_ERROR", "TSV_TNEW_PAGE_ALLOC_FAILED", "MESSAGE_TYPE_X", "error M7 021"),
        ("sapprd-app01", "sapprd-app02", "sapprd-db01"),
    ),
    System(
        "Exchange Online", "Collaboration Services", 0.10, True, "infra",
        (("Email", "Mail delivery", "Messaging", 0.35), ("Email", "Mailbox", "Messaging", 0.3),
         ("Email", "Calendar", "Messaging", 0.2), ("Access", "Password reset", "Service Desk", 0.15)),
        ("Outlook", "email", "Exchange", "mailbox", "O365 mail"),
        ("shared mailbox", "calendar invite", "distribution list", "attachment", "out of office reply",
         "meeting room"),
        ("550 5.1.1", "0x800CCC0E", "421 4.4.2"),
        ("outlook.office365.com", "mailrelay01"),
    ),
    System(
        "VPN Gateway", "Network Engineering", 0.08, True, "infra",
        (("Network", "VPN", "Network Ops", 0.6), ("Network", "Connectivity", "Network Ops", 0.25),
         ("Access", "Account locked", "Identity & Access", 0.15)),
        ("VPN", "GlobalProtect", "remote access", "VPN client"),
        ("VPN tunnel", "home office connection", "VPN profile", "remote desktop"),
        ("error 809", "error 720", "gateway timeout"),
        ("vpn-gw01", "vpn-gw02", "vpn.corp.example.com"),
    ),
    System(
        "Jira", "Developer Tools", 0.06, False, "office",
        (("Software", "Application error", "Application Support", 0.4), ("Software", "Performance", "Application Support", 0.25),
         ("Access", "Authorization", "Identity & Access", 0.2), ("Software", "Functional question", "Service Desk", 0.15)),
        ("Jira", "JIRA", "Jira Software"),
        ("board", "sprint", "ticket workflow", "dashboard", "project PAY"),
        ("HTTP 500", "XSRF check failed", "HTTP 504"),
        ("jira.corp.example.com",),
    ),
    System(
        "Salesforce CRM", "CRM Team", 0.07, False, "office",
        (("Software", "Application error", "Application Support", 0.35), ("Software", "Functional question", "Service Desk", 0.2),
         ("Access", "Authorization", "Identity & Access", 0.2), ("Software", "Performance", "Application Support", 0.25)),
        ("Salesforce", "SFDC", "CRM"),
        ("opportunity", "lead import", "account page", "quote", "pipeline report"),
        ("INVALID_SESSION_ID", "UNABLE_TO_LOCK_ROW", "Apex CPU time limit exceeded"),
        ("corp.my.salesforce.com",),
    ),
    System(
        "Oracle DB cluster", "Data Platform", 0.06, True, "infra",
        (("Database", "Performance", "DBA", 0.4), ("Database", "Storage", "DBA", 0.3),
         ("Database", "Connectivity", "DBA", 0.3)),
        ("Oracle", "database", "DB", "Oracle RAC"),
        ("query", "listener", "schema FIN", "nightly ETL", "reporting view"),
        ("ORA-12541", "ORA-00060", "ORA-01555", "ORA-12170"),
        ("oradb-prd01", "oradb-prd02", "oradb-rpt01"),
    ),
    System(
        "Kubernetes prod", "Platform Engineering", 0.07, True, "infra",
        (("Infrastructure", "Capacity", "Cloud Platform", 0.3), ("Infrastructure", "Server", "Cloud Platform", 0.35),
         ("Software", "Application error", "Cloud Platform", 0.2), ("Network", "DNS", "Network Ops", 0.15)),
        ("Kubernetes", "k8s", "AKS prod", "prod cluster"),
        ("pod", "deployment", "ingress", "namespace payments", "helm release"),
        ("CrashLoopBackOff", "ImagePullBackOff", "OOMKilled", "502 Bad Gateway"),
        ("aks-prod-np1-07", "aks-prod-np1-12", "k8s-prd-node03"),
    ),
    System(
        "Service Desk portal", "IT Service Management", 0.06, False, "desk",
        (("Software", "Functional question", "Service Desk", 0.4), ("Software", "Application error", "Application Support", 0.35),
         ("Access", "Authorization", "Identity & Access", 0.25)),
        ("self-service portal", "service portal", "ITSM portal", "portal"),
        ("request form", "catalog item", "ticket status", "knowledge article", "approval"),
        ("HTTP 403", "page not found", "HTTP 500"),
        ("servicedesk.corp.example.com",),
    ),
    System(
        "Payroll", "HR Systems", 0.04, False, "office",
        (("Software", "Batch job failure", "SAP Support", 0.3), ("Software", "Application error", "SAP Support", 0.3),
         ("Software", "Functional question", "Service Desk", 0.25), ("Access", "Authorization", "Identity & Access", 0.15)),
        ("Payroll", "payroll system", "SAP HCM", "payslip portal"),
        ("payslip", "overtime entry", "salary run", "tax form", "expense claim"),
        ("PY-0042", "posting run cancelled", "RPCALC error"),
        ("hcm-prd01",),
    ),
    System(
        "Wi-Fi campus", "Network Engineering", 0.07, False, "office",
        (("Network", "Wi-Fi", "Network Ops", 0.75), ("Network", "Connectivity", "Network Ops", 0.25)),
        ("Wi-Fi", "WiFi", "wireless", "WLAN", "CorpWLAN"),
        ("meeting room", "floor 3", "canteen", "guest wifi", "building B"),
        ("authentication failed", "no IP address", "limited connectivity"),
        ("ap-b2-314", "wlc01", "ap-a1-107"),
    ),
    System(
        "Workplace devices", "Workplace Services", 0.16, False, "walkin",
        (("Hardware", "Laptop", "End User Computing", 0.4), ("Hardware", "Printer", "End User Computing", 0.2),
         ("Hardware", "Peripheral", "End User Computing", 0.15), ("Software", "Installation", "End User Computing", 0.25)),
        ("laptop", "notebook", "PC", "docking station", "printer"),
        ("screen", "keyboard", "battery", "docking station", "printer on floor 2", "headset", "Teams", "Visio"),
        ("BSOD 0x0000007E", "error 0x80070005", "toner low"),
        ("LT-4821", "LT-1307", "PRN-F2-01", "LT-7730"),
    ),
    System(
        "Active Directory / SSO", "Identity Services", 0.12, True, "desk",
        (("Access", "Password reset", "Service Desk", 0.4), ("Access", "Account locked", "Identity & Access", 0.35),
         ("Access", "Authorization", "Identity & Access", 0.25)),
        ("account", "login", "password", "SSO", "MFA"),
        ("password", "MFA token", "user account", "single sign-on", "access group"),
        ("AADSTS50076", "0xC000006A", "account locked"),
        ("adfs01", "dc02", "login.microsoftonline.com"),
    ),
)  # fmt: skip

ASSIGNMENT_GROUPS = (
    "Service Desk", "Network Ops", "DBA", "SAP Support", "Cloud Platform", "Identity & Access",
    "End User Computing", "Messaging", "Application Support",
)  # fmt: skip
# Plausible wrong groups for a misrouted ticket (label noise).
ALTERNATE_GROUPS = {
    "Service Desk": ("End User Computing", "Identity & Access", "Application Support"),
    "Network Ops": ("Cloud Platform", "End User Computing", "Service Desk"),
    "DBA": ("Application Support", "Cloud Platform", "SAP Support"),
    "SAP Support": ("Application Support", "DBA", "Service Desk"),
    "Cloud Platform": ("Network Ops", "DBA", "Application Support"),
    "Identity & Access": ("Service Desk", "Messaging", "Network Ops"),
    "End User Computing": ("Service Desk", "Network Ops", "Messaging"),
    "Messaging": ("Service Desk", "Identity & Access", "End User Computing"),
    "Application Support": ("SAP Support", "Service Desk", "Cloud Platform"),
}

CONTACT_TYPES = ("phone", "email", "self-service", "monitoring", "walk-in")
CONTACT_PROFILES = {
    "office": (0.28, 0.24, 0.38, 0.03, 0.07),
    "infra": (0.2, 0.17, 0.2, 0.38, 0.05),
    "desk": (0.35, 0.15, 0.4, 0.02, 0.08),
    "walkin": (0.3, 0.15, 0.3, 0.0, 0.25),
}
LOCATIONS = ("Amsterdam HQ", "Berlin", "London", "Madrid", "Milan", "New York", "Paris", "Singapore",
             "Warsaw", "Zurich")  # fmt: skip
LOCATION_WEIGHTS = np.array([0.25, 0.1, 0.14, 0.06, 0.05, 0.12, 0.09, 0.06, 0.08, 0.05])


@dataclass(frozen=True)
class RootCause:
    name: str
    systems: tuple[str, ...]
    category: str
    subcategory: str
    group: str
    weight: float
    short: tuple[str, ...]
    detail: tuple[str, ...]


ROOT_CAUSES = (
    RootCause(
        "expired certificate on VPN gateway", ("VPN Gateway",), "Network", "VPN", "Network Ops", 0.18,
        ("VPN: certificate error when connecting", "{alias} says server certificate expired",
         "cannot connect to VPN - certificate not valid", "VPN handshake failed (certificate)",
         "certificate warning on {alias}"),
        ("The client shows 'The server certificate has expired'.",
         "SSL handshake failed, certificate expired on {host}.",
         "Error: untrusted certificate chain when connecting."),
    ),
    RootCause(
        "SAP batch job lock", ("SAP ERP",), "Software", "Batch job failure", "SAP Support", 0.16,
        ("SAP batch job {job} cancelled - lock entry", "{job} stuck on enqueue lock", "SM37 shows {job} cancelled",
         "posting run blocked by lock on {table}"),
        ("Job {job} ended with 'lock entry could not be set'.", "SM12 shows old lock entries from user BATCH.",
         "Enqueue lock on table {table} held for hours."),
    ),
    RootCause(
        "DB tablespace full", ("Oracle DB cluster",), "Database", "Storage", "DBA", 0.14,
        ("ORA-01653 unable to extend table", "tablespace {ts} full", "inserts failing - tablespace full on {host}",
         "ORA-01654 unable to extend index in {ts}"),
        ("ORA-01653: unable to extend table FIN.GL_LINES by 8192 in tablespace {ts}.",
         "Tablespace {ts} is at 100%.", "Nightly load aborted: unable to extend tablespace."),
    ),
    RootCause(
        "SSO token misconfiguration", ("Active Directory / SSO", "Jira", "Salesforce CRM", "Service Desk portal"),
        "Access", "Authorization", "Identity & Access", 0.16,
        ("login loop on {app}", "{app} SSO redirect loop", "AADSTS50011 when logging into {app}",
         "SAML token error on {app}", "single sign-on fails for {app}"),
        ("After login it keeps redirecting back to the sign-in page.",
         "Error AADSTS50011: the reply URL does not match.", "SAML assertion invalid, token expires immediately."),
    ),
    RootCause(
        "disk full on k8s nodes", ("Kubernetes prod",), "Infrastructure", "Capacity", "Cloud Platform", 0.12,
        ("pods evicted on {node} - DiskPressure", "node {node} disk full", "DiskPressure on k8s nodes",
         "ephemeral storage exceeded, pods evicted"),
        ("kubelet reports DiskPressure on {node}.", "Pods evicted: the node was low on resource ephemeral-storage.",
         "/var/lib/containerd at 98% on {node}."),
    ),
    RootCause(
        "mail relay throttling", ("Exchange Online",), "Email", "Mail delivery", "Messaging", 0.14,
        ("emails delayed - 451 4.7.500", "outgoing mail queued, relay throttling", "mails to customers delayed by hours",
         "bulk mail rejected: throttled by relay"),
        ("NDR says 451 4.7.500 server busy, please try again later.",
         "Messages sit in the queue of the mail relay for hours.", "Relay {host} is throttling our sender address."),
    ),
    RootCause(
        "Wi-Fi controller firmware bug", ("Wi-Fi campus",), "Network", "Wi-Fi", "Network Ops", 0.10,
        ("wifi keeps disconnecting in building {bld}", "wireless drops every few minutes ({bld})",
         "access points rebooting in building {bld}", "CorpWLAN unstable after AP firmware update"),
        ("Access point {ap} reboots every 20 minutes.", "Controller log shows AP firmware crash.",
         "The whole floor loses wifi several times per hour."),
    ),
)  # fmt: skip
ROOT_CAUSE_SHARE = 0.12  # share of incidents that belong to a recurring root cause
ONE_OFF = "one-off"

SYMPTOMS = {
    ("Software", "Application error"): ("error when opening {obj}", "{code} when saving {obj}",
                                        "crashes when I open {obj}", "shows an error on {obj}", "cannot save {obj}",
                                        "error message on {obj}"),
    ("Software", "Performance"): ("very slow", "{obj} takes minutes to load", "slow response on {obj}",
                                  "timeouts on {obj}", "performance degraded since this morning"),
    ("Software", "Batch job failure"): ("batch job failed", "nightly job for {obj} did not run",
                                        "scheduled job cancelled", "job stuck: {obj}"),
    ("Software", "Installation"): ("please install {obj}", "installation of {obj} fails", "software update failed",
                                   "need admin rights to install {obj}"),
    ("Software", "Functional question"): ("how do I change {obj}", "question about {obj}",
                                          "where can I find {obj}", "need help with {obj}"),
    ("Network", "VPN"): ("cannot connect to VPN", "VPN disconnects every few minutes", "VPN {code}",
                         "VPN very slow from home"),
    ("Network", "Connectivity"): ("no network connection", "cannot reach {host}", "connection drops",
                                  "network unreachable in {obj}"),
    ("Network", "Wi-Fi"): ("no wifi in {obj}", "wifi keeps dropping", "cannot connect to wireless",
                           "weak signal in {obj}"),
    ("Network", "DNS"): ("DNS resolution fails for {host}", "name not resolved", "cannot resolve {host}"),
    ("Hardware", "Laptop"): ("laptop does not start", "{code} blue screen", "battery not charging",
                             "screen flickering", "laptop very slow"),
    ("Hardware", "Printer"): ("printer not printing", "paper jam on {obj}", "cannot add printer",
                              "print jobs stuck in queue"),
    ("Hardware", "Peripheral"): ("headset not recognized", "docking station not working",
                                 "second monitor stays black", "keyboard broken"),
    ("Database", "Performance"): ("slow queries on {host}", "query on {obj} runs for hours", "database very slow",
                                  "lock waits on {obj}"),
    ("Database", "Storage"): ("disk space alert on {host}", "archive log area almost full",
                              "storage growth on {obj}"),
    ("Database", "Connectivity"): ("cannot connect to database", "{code} from {host}", "connection pool exhausted",
                                   "DB connection refused"),
    ("Access", "Password reset"): ("password reset", "forgot my password", "password expired",
                                   "need a new password"),
    ("Access", "Account locked"): ("account locked", "locked out after password change", "user blocked",
                                   "cannot log in, account locked"),
    ("Access", "Authorization"): ("no access to {obj}", "need access rights for {obj}", "permission denied on {obj}",
                                  "missing role for {obj}"),
    ("Email", "Mail delivery"): ("emails not delivered", "mail stuck in outbox", "bounce {code}",
                                 "not receiving external emails"),
    ("Email", "Mailbox"): ("mailbox full", "cannot open {obj}", "emails disappeared", "mailbox quota exceeded"),
    ("Email", "Calendar"): ("meeting invites not showing", "calendar not syncing", "cannot book {obj}",
                            "delegate cannot see calendar"),
    ("Infrastructure", "Capacity"): ("{obj} out of memory", "cluster at capacity", "autoscaling not working",
                                     "CPU throttling on {obj}"),
    ("Infrastructure", "Server"): ("service down", "{code} on {obj}", "pods restarting", "deployment of {obj} failed"),
}  # fmt: skip
DETAILS = (
    "Error message: {code}.", "Affects about {users} users at {location}.", "Host: {host}.",
    "I already restarted, no change.", "Colleagues have the same problem.", "This is blocking my work.",
    "It started {when}.", "Please call me back on my mobile.", "Screenshot attached.", "Tried again, still not working.",
)  # fmt: skip
OTHER_SYSTEM = ("{other} works fine though.", "Might be related to the {other} change yesterday.",
                "I also cannot open {other}.")  # fmt: skip
# Said at open time when the fix will depend on someone else (a vendor, a part, the user): most pending
# tickets carry one, a few others do too, so the hint is informative but not a label.
WAIT_HINTS = ("A replacement part has to be ordered.", "Vendor case needs to be opened with the supplier.",
              "User is travelling, available again next week.", "Waiting for the vendor to confirm a fix.",
              "Needs a new device from procurement.", "Third-party support contract has to be involved.")  # fmt: skip
VAGUE_SHORT = ("it doesn't work, please help", "not working", "urgent issue", "problem with my computer",
               "error message", "cannot work", "system not working", "help needed")  # fmt: skip
VAGUE_DESC = ("It doesn't work, please help.", "Not working since this morning.", "Please call me back.",
              "Same issue as last week.", "Nothing works, urgent!", "I get an error.")  # fmt: skip
PREFIXES = ("URGENT: ", "Urgent - ", "RE: ", "FW: ")
SUFFIXES = (" - not working", " - please help", " ASAP", " again", " (urgent)", " - error")
GLOBAL_FILL = {
    "job": ("ZFI_POST_DAILY", "ZMM_MRP_RUN", "ZSD_BILLING"),
    "table": ("BKPF", "EKKO", "VBAK"),
    "ts": ("FIN_DATA", "USERS", "ETL_STAGE"),
    "app": ("Jira", "Salesforce", "the service portal", "Confluence"),
    "node": ("aks-prod-np1-07", "aks-prod-np1-12", "k8s-prd-node03"),
    "bld": ("A", "B", "C"),
    "ap": ("ap-b2-314", "ap-a1-107", "ap-c3-221"),
    "when": ("this morning", "yesterday", "after the last update", "on Monday", "about an hour ago",
             "over the weekend"),
}  # fmt: skip
ROLLOUT_OBJECTS = ("onboarding form", "HR case", "approval workflow", "document upload", "employee profile",
                   "leave request")  # fmt: skip
