-- wrk script for bench/orders.py: POST /api/v2/activeorders with a unique digit `name` per
-- request (thread id * 10^7 + offset + counter), orderType ON_PREMISES, a Bearer token.
--
--   WRK_OUT=/tmp/x.json wrk -t2 -c50 -d10s --latency -s bench/wrk_post.lua \
--       http://127.0.0.1:PORT/api/v2/activeorders -- TOKEN [OFFSET]
--
-- Each thread remembers the names it sent and the names acknowledged with a 2xx (read back from
-- the response body's "name"), so the caller can check acknowledged ⊆ stored. done() writes one
-- JSON object to $WRK_OUT (wrk's own text report still goes to stdout).

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local base, counter, path, headers = 0, 0, "/", {}
acked, statuses, sent = {}, {}, 0

function init(args)
  local token = args[1] or ""
  local offset = tonumber(args[2] or "0")
  base = tid * 10000000 + offset
  path = wrk.path
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
end

function request()
  counter = counter + 1
  sent = counter
  local body = string.format('{"name":"%d","orderType":"ON_PREMISES"}', base + counter)
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status >= 200 and status < 300 then
    local name = string.match(body, '"name":"(%d+)"')
    if name then
      acked[#acked + 1] = name
    end
  end
end

local function quote(s)
  return '"' .. tostring(s) .. '"'
end

function done(summary, latency, requests)
  local out = os.getenv("WRK_OUT")
  if not out then
    return
  end
  local parts = {}
  local function add(k, v)
    parts[#parts + 1] = quote(k) .. ":" .. v
  end
  add("requests", string.format("%d", summary.requests))
  add("duration_us", string.format("%d", summary.duration))
  add("err_connect", string.format("%d", summary.errors.connect))
  add("err_read", string.format("%d", summary.errors.read))
  add("err_write", string.format("%d", summary.errors.write))
  add("err_status", string.format("%d", summary.errors.status))
  add("err_timeout", string.format("%d", summary.errors.timeout))
  add("lat_mean_us", string.format("%.1f", latency.mean))
  add("lat_max_us", string.format("%d", latency.max))
  add("lat_p50_us", string.format("%d", latency:percentile(50)))
  add("lat_p90_us", string.format("%d", latency:percentile(90)))
  add("lat_p99_us", string.format("%d", latency:percentile(99)))
  local th = {}
  for _, t in ipairs(threads) do
    local st = {}
    for k, v in pairs(t:get("statuses") or {}) do
      st[#st + 1] = quote(k) .. ":" .. string.format("%d", v)
    end
    local names = {}
    for _, n in ipairs(t:get("acked") or {}) do
      names[#names + 1] = quote(n)
    end
    th[#th + 1] = "{" .. quote("tid") .. ":" .. string.format("%d", t:get("tid"))
      .. "," .. quote("base") .. ":" .. string.format("%d", t:get("tid") * 10000000)
      .. "," .. quote("sent") .. ":" .. string.format("%d", t:get("sent") or 0)
      .. "," .. quote("statuses") .. ":{" .. table.concat(st, ",") .. "}"
      .. "," .. quote("acked") .. ":[" .. table.concat(names, ",") .. "]}"
  end
  add("threads", "[" .. table.concat(th, ",") .. "]")
  local f = assert(io.open(out, "w"))
  f:write("{" .. table.concat(parts, ",") .. "}\n")
  f:close()
end
