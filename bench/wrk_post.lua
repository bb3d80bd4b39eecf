-- wrk script for bench/bench_latency.py: POST every line of $BODIES once (JSON bodies, one per line).
-- With N threads ($THREADS), thread k sends lines k, k+N, k+2N, ... so no body is sent twice; when a
-- thread runs out it starts again (the bench gives each run more lines than it can send, and checks).
-- At the end it prints one line "WRK_JSON {...}" with the latency percentiles (ms), counts and errors.

local bodies = {}
local next_body = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(os.getenv("THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("BODIES")) do
    if i % n == id then
      table.insert(bodies, line)
    end
    i = i + 1
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  next_body = next_body + 1
  if next_body > #bodies then
    next_body = 1
    wrapped = (wrapped or 0) + 1
  end
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function done(summary, latency, requests)
  local e = summary.errors
  local wrapped_total = 0
  for _, thread in ipairs(threads) do
    wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.6f, "p50_ms": %.4f, "p90_ms": %.4f, "p99_ms": %.4f, ' ..
    '"p999_ms": %.4f, "max_ms": %.4f, "mean_ms": %.4f, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "wrapped": %d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(99.9) / 1e3, latency.max / 1e3, latency.mean / 1e3,
    e.connect, e.read, e.write, e.status, e.timeout, wrapped_total))
end
