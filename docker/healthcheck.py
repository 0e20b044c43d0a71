#!/usr/bin/env python3
"""Container health check: exit 0 when the service on VITSERVE_PORT answers /readyz with 200."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('VITSERVE_PORT', '8000')}/readyz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as error:  # refused, timed out, or a non-2xx status
    sys.stderr.write(f"{url}: {error}\n")
    sys.exit(1)
