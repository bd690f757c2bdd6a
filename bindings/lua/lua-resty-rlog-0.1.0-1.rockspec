-- LuaRocks package of the rlog Lua binding: resty.rlog, and resty.logger.socket (the drop-in for
-- lua-resty-logger-socket, which it therefore replaces in a tree that has both).
--
--   luarocks make lua-resty-rlog-0.1.0-1.rockspec          (from bindings/lua, in a checkout)
--   luarocks install lua-resty-rlog                        (once published)
--
-- The modules load librlog.so through the LuaJIT FFI; it is not part of the rock: install it
-- with `make install` (or point RLOG_LIB at it; nginx: `env RLOG_LIB=/path/to/librlog.so;`).
-- Before `luarocks upload`, source.url must name the published repository.
rockspec_format = "3.0"
package = "lua-resty-rlog"
version = "0.1.0-1"
source = {
   url = "git+https://example.invalid/rlog.git",
   tag = "v0.1.0",
   dir = "rlog/bindings/lua",
}
description = {
   summary = "lua-resty-logger-socket's API over librlog: logs shipped by a native thread, never blocking nginx",
   detailed = [[
      resty.rlog gives init / initted / log / flush (lua-resty-logger-socket's API, its config
      keys and error strings) over librlog, a Rust library with a C ABI loaded through the
      LuaJIT FFI: log() only appends to an in-memory buffer, and librlog's own thread delivers
      (TCP, UDP, unix sockets, TLS, rlogd) with retries, counted. resty.logger.socket makes it a
      drop-in for require "resty.logger.socket". Needs LuaJIT (OpenResty, or nginx with
      lua-nginx-module) and librlog.so.
   ]],
   license = "MIT OR Apache-2.0",
   labels = { "openresty", "nginx", "logging", "ffi" },
}
dependencies = {
   "lua >= 5.1",
}
build = {
   type = "builtin",
   modules = {
      ["resty.rlog"] = "resty/rlog.lua",
      ["resty.logger.socket"] = "resty/logger/socket.lua",
   },
   copy_directories = {},
}
