-- wrk script of the receiver benchmark (bench/receiver.py), QUALITY P1.
--
-- Every request is a new webhook delivery as Sage Intacct sends it: POST of a ~600-byte JSON
-- body with "Authorization: Bearer <JWT>", "X-Trusted-Context" and a unique Idempotency-Key
-- (run tag + wrk thread id + per-thread counter), so the receiver can never answer "duplicate".
--
-- Configured through the environment (set by bench/receiver.py):
--   BENCH_TOKEN, BENCH_CONTEXT        the credentials (one long-lived token for the whole run)
--   BENCH_BODY_PREFIX/_SUFFIX         the body around the record key (thread-counter)
--   BENCH_TAG                         unique per wrk run, so keys never repeat across runs
--   BENCH_DELAY_MS                    > 0: paced mode, each connection waits on average this
--                                     long between requests (uniform 0.5x..1.5x, so the 32
--                                     connections do not fire in lock-step)
--   BENCH_OUT                         file the results are written to as JSON by done()

local token = assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN is not set")
local context = assert(os.getenv("BENCH_CONTEXT"), "BENCH_CONTEXT is not set")
local prefix = assert(os.getenv("BENCH_BODY_PREFIX"), "BENCH_BODY_PREFIX is not set")
local suffix = assert(os.getenv("BENCH_BODY_SUFFIX"), "BENCH_BODY_SUFFIX is not set")
local tag = assert(os.getenv("BENCH_TAG"), "BENCH_TAG is not set")
local out = os.getenv("BENCH_OUT")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0

-- Main state: the wrk threads, to collect their status counts in done().
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

-- Thread state (globals, so that done() can read them with thread:get).
local headers
local counter = 0
statuses = {}

function init(args)
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["X-Trusted-Context"] = context,
  }
  math.randomseed(thread_id * 7919 + os.time())
end

function request()
  counter = counter + 1
  local n = thread_id .. "-" .. counter
  headers["Idempotency-Key"] = tag .. "-" .. n
  return wrk.format("POST", nil, headers, prefix .. n .. suffix)
end

function response(status, _headers, _body)
  statuses[status] = (statuses[status] or 0) + 1
end

if delay_ms > 0 then
  function delay()
    return math.floor(delay_ms * (0.5 + math.random()) + 0.5)
  end
end

local function int(x)
  return math.floor(tonumber(x) or 0)
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses") or {}) do
      totals[code] = (totals[code] or 0) + n
    end
  end
  local codes = {}
  for code, n in pairs(totals) do
    codes[#codes + 1] = string.format('"%d": %d', int(code), int(n))
  end
  local e = summary.errors
  local json = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %d}, ' ..
    '"statuses": {%s}}',
    int(summary.requests), int(summary.duration), int(summary.bytes),
    int(e.connect), int(e.read), int(e.write), int(e.status), int(e.timeout),
    int(latency:percentile(50)), int(latency:percentile(90)), int(latency:percentile(99)),
    int(latency:percentile(99.9)), int(latency.max), int(latency.mean),
    table.concat(codes, ", "))
  if out and out ~= "" then
    local file = assert(io.open(out, "w"))
    file:write(json, "\n")
    file:close()
  else
    io.write(json, "\n")
  end
end
