# Runs config.ru under puma (Debian puma 5.6) on 127.0.0.1:PORT (0 = any free port), single mode,
# and prints `READY <port>` on stdout once the listener is bound and the server booted. Puma's
# and Action Cable's logs go to stderr. Started by start.sh.
require 'puma'
require 'puma/configuration'
require 'puma/events'
require 'puma/launcher'

port = Integer(ARGV[0] || ENV['CABLE_PORT'] || '0')
threads = Integer(ENV['CABLE_PUMA_THREADS'] || '8')
rackup = File.join(__dir__, 'config.ru')

conf = Puma::Configuration.new({}) do |c|
  c.bind "tcp://127.0.0.1:#{port}"
  c.threads 2, threads
  c.workers 0
  c.rackup rackup
  c.environment 'development'
  c.log_requests false
  c.tag 'switchboard-actioncable'
end
events = Puma::Events.new($stderr, $stderr)
launcher = Puma::Launcher.new(conf, events: events)
events.on_booted do
  $stdout.puts "READY #{launcher.connected_ports.first}"
  $stdout.flush
end
launcher.run
