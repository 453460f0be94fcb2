-- POST 100-byte jobs spread over 64 queues.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local n = 0
request = function()
  n = n + 1
  local path = string.format("/q/bench%d", n % 64)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, job(n))
end
