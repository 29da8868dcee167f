"""The Cloud Recording contract, written once and shared by both sides of the wire.

The worker (the client of the recording service) and the emulator (a stand-in for the service)
both import this package; neither imports the other. It holds only what the service defines:

``models``    the REST request and response bodies, their rules and defaults (pydantic)
``routes``    the REST paths
``codes``     recording status values (query ``serverResponse.status``) and error codes
``ncs``       notification (NCS) event types, leave codes and signatures
``naming``    the names of the files a recording writes
``defaults``  the service's defaults that more than one place applies

Nothing here does I/O or knows about Celery, Redis or the emulator's internals.
"""
