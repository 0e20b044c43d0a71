-- wrk script: one request per call, as the benchmark's environment says.
--   BENCH_BODY (+ BENCH_CONTENT_TYPE, BENCH_HEADER_LENGTH): post that file's bytes as they are
--     (the Open Inference Protocol's binary tensors: a JSON header then the raw FP32 data, with
--     `Inference-Header-Content-Length` saying how long the JSON is);
--   otherwise BENCH_JPEG: post that JPEG to /classify as multipart/form-data (a `file` part).
local function read(path, what)
  local file = assert(io.open(path, "rb"), "cannot open " .. what .. "=" .. tostring(path))
  local data = file:read("*a")
  file:close()
  return data
end

wrk.method = "POST"
local body_path = os.getenv("BENCH_BODY")
if body_path then
  wrk.body = read(body_path, "BENCH_BODY")
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/octet-stream"
  local header_length = os.getenv("BENCH_HEADER_LENGTH")
  if header_length then
    wrk.headers["Inference-Header-Content-Length"] = header_length
  end
else
  local jpeg = read(os.getenv("BENCH_JPEG"), "BENCH_JPEG")
  local boundary = "vitservebenchboundary"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"file\"; filename=\"bench.jpg\"\r\n"
    .. "Content-Type: image/jpeg\r\n\r\n"
    .. jpeg .. "\r\n--" .. boundary .. "--\r\n"
end

-- Non-2xx answers and timeouts are reported, so a run with errors cannot pass for a fast one.
function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d duration_us=%d errors_timeout=%d errors_status=%d ",
    summary.requests, summary.duration, summary.errors.timeout, summary.errors.status))
  io.write(string.format("p50_us=%d p90_us=%d p99_us=%d mean_us=%.0f\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
