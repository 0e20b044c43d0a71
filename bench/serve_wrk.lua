-- wrk script: POST one JPEG to /classify as multipart/form-data (a `file` part).
-- The JPEG's path comes from the BENCH_JPEG environment variable.
local path = os.getenv("BENCH_JPEG")
local file = assert(io.open(path, "rb"), "cannot open BENCH_JPEG=" .. tostring(path))
local jpeg = file:read("*a")
file:close()

local boundary = "vitservebenchboundary"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. "Content-Disposition: form-data; name=\"file\"; filename=\"bench.jpg\"\r\n"
  .. "Content-Type: image/jpeg\r\n\r\n"
  .. jpeg .. "\r\n--" .. boundary .. "--\r\n"

-- Non-2xx answers and timeouts are reported, so a run with errors cannot pass for a fast one.
function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d duration_us=%d errors_timeout=%d errors_status=%d ",
    summary.requests, summary.duration, summary.errors.timeout, summary.errors.status))
  io.write(string.format("p50_us=%d p90_us=%d p99_us=%d mean_us=%.0f\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
