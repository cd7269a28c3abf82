"""Telephony voice gateway: answers SIP calls and runs what each number's dialplan says."""

__version__ = "0.1.0"
