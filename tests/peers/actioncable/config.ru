# Standalone Rails Action Cable server (Debian ruby-actioncable 6.1.7, no Rails app) for the
# integration tests. Run it with start.sh (puma, 127.0.0.1 only). Mirrors the vendor's channel
# layout (NotificationChannel, ChatRoomChannel, Chats::RoomChannel,
# Chats::CommunityMemberThreadsChannel) with fixed test members.
#
# WebSocket: ws://127.0.0.1:PORT/cable (subprotocols actioncable-v1-json, actioncable-unsupported)
#
# Connection auth (`identified_by :current_member`), first match wins:
#   ?token=T                         query parameter
#   Authorization: Bearer T          header
#   Cookie: member_token=T           cookie
#   Sec-WebSocket-Protocol: ..., token.T   (the "subprotocol trick"; the server still answers
#                                     actioncable-v1-json)
# Tokens: good-token -> m1, other-token -> m2, third-token -> m3, plus CABLE_TOKENS="tok=member,..".
# Anything else: reject_unauthorized_connection, i.e. after the 101 the server sends
# {"type":"disconnect","reason":"unauthorized","reconnect":false} and closes.
#
# Channels (identifier {"channel":"<class>", ...params}); every stream has the short name used by
# the tests and the vendor guide's name:
#   NotificationChannel                   notifications:<member>, notification-channel-<member>
#   ChatRoomChannel                       chat_room_member:<member>, chat-room-channel-<member>;
#                                         with param id also chat_room:<id>, chat-room-<id>-channel
#   Chats::RoomChannel {id}               chat_room:<id>, chat-room-<id>-channel
#   Chats::CommunityMemberThreadsChannel  chat_threads:<member>,
#                                         chat-community-member-<member>-threads-channel
#   RejectedRoomChannel                   always rejects
# ChatRoomChannel and Chats::RoomChannel reject id "forbidden" (and a missing id on
# Chats::RoomChannel).
# Actions (perform):
#   sendMessage {body, creation_uuid?, chat_thread_id?, parent_message_id?}   (rooms)
#       -> broadcast {event:"newMessage", message:{id, chat_room_id, chat_room_uuid, body, sender, ...}}
#          to chat_room:<id>
#   updateMessage {id, body}   -> {event:"updatedMessage", message:{...}} to chat_room:<id>
#   deleteMessage {id}         -> {event:"deletedMessage", message:{id, parent_message:nil}} to chat_room:<id>
#   markRead {}                -> {event:"chatRoomRead", chat_room_uuid} to the member's ChatRoomChannel streams
#   markThreadRead {chat_thread_id}  (threads channel) -> {event:"chatThreadRead", chat_thread_id}
#   markAllRead {}             (notifications) -> {event:"resetNewNotificationCount", new_notifications_count:0}
#   echo {...}                 (any channel) -> transmit {event:"echo", data:{...}, member} to the caller only
#   receive (no action)        recorded only
# Every perform (known or not) is recorded for GET /control/performed.
#
# HTTP control API (JSON in and out):
#   POST /control/broadcast   {stream, data}      ActionCable.server.broadcast(stream, data)
#   GET  /control/performed                       [{member, channel, identifier, params, action, data, known, at}]
#   GET  /control/events                          [{type: connect|unauthorized|disconnect|subscribed|rejected|unsubscribed, member, ...}]
#   GET  /control/connections                     [{member, identifier, started_at, subscriptions}]
#   POST /control/disconnect  {member, reconnect?=true}   remote_connections.where(current_member:).disconnect(reconnect:)
#   POST /control/restart                         ActionCable.server.restart (reason server_restart to all)
#   POST /control/reset                           clears performed and events
#
# Environment:
#   CABLE_ALLOW_ANY_ORIGIN=1   accept any Origin (and a missing one); default: only
#                              http(s)://127.0.0.1|localhost[:port] plus CABLE_ORIGINS (comma-separated)
#   CABLE_BEAT_INTERVAL=secs   ping period (default 3, Rails' BEAT_INTERVAL); 0 = never ping
#   CABLE_LOG_LEVEL=debug      Action Cable logging (to stderr), default info
#
# Rails 6.1 has no `reconnect:` on RemoteConnection#disconnect and just drops the socket; the
# patch below backports Rails 7.1+ (the 8.1 wire behaviour: {"type":"disconnect","reason":"remote",
# "reconnect":...} then a close).
require 'action_cable'
require 'json'
require 'logger'
require 'securerandom'
require 'time'

$stderr.sync = true
LOG = Logger.new($stderr)
LOG.level = ENV['CABLE_LOG_LEVEL'] == 'debug' ? Logger::DEBUG : Logger::INFO

TOKENS = { 'good-token' => 'm1', 'other-token' => 'm2', 'third-token' => 'm3' }
ENV.fetch('CABLE_TOKENS', '').split(',').each do |pair|
  tok, member = pair.split('=', 2)
  TOKENS[tok] = member if tok && member && !tok.empty?
end

# What tests read back through the control API.
module Record
  MUTEX = Mutex.new
  PERFORMED = []
  EVENTS = []
  SEQ = [0]

  def self.now = Time.now.utc.iso8601(3)
  def self.performed(entry) = MUTEX.synchronize { PERFORMED << entry.merge('at' => now) }
  def self.event(entry) = MUTEX.synchronize { EVENTS << entry.merge('at' => now) }
  def self.next_id = MUTEX.synchronize { SEQ[0] += 1 }
  def self.reset = MUTEX.synchronize { PERFORMED.clear; EVENTS.clear }
  def self.snapshot(list) = MUTEX.synchronize { list.map(&:dup) }
end

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    identified_by :current_member

    def connect
      token, via = find_token
      member = token && TOKENS[token]
      unless member
        Record.event('type' => 'unauthorized', 'token' => token, 'via' => via)
        reject_unauthorized_connection
      end
      self.current_member = member
      Record.event('type' => 'connect', 'member' => member, 'via' => via)
    end

    def disconnect
      Record.event('type' => 'disconnect', 'member' => current_member)
    end

    private

    def find_token
      q = request.params['token']
      return [q, 'query'] if q.present?
      auth = request.headers['Authorization'].to_s
      return [auth.sub(/\ABearer\s+/i, ''), 'header'] if auth =~ /\ABearer\s+\S/i
      c = request.cookies['member_token']
      return [c, 'cookie'] if c.present?
      proto = request.headers['Sec-WebSocket-Protocol'].to_s.split(',').map(&:strip).find { |p| p.start_with?('token.') }
      return [proto.delete_prefix('token.'), 'subprotocol'] if proto
      [nil, nil]
    end
  end

  class Channel < ActionCable::Channel::Base
    # Records every perform, including unknown actions and `receive`, then dispatches as usual.
    def perform_action(data)
      action = extract_action(data)
      Record.performed('member' => current_member, 'channel' => self.class.name,
                       'identifier' => identifier, 'params' => params.to_h,
                       'action' => action, 'data' => data, 'known' => processable_action?(action))
      super
    end

    def receive(_data); end

    # Answers only the caller.
    def echo(data)
      transmit({ 'event' => 'echo', 'data' => data.except('action'), 'member' => current_member })
    end

    def unsubscribed
      Record.event('type' => 'unsubscribed', 'member' => current_member, 'identifier' => identifier)
    end

    private

    def streams_from(*names)
      names.each { |n| stream_from n }
      Record.event('type' => 'subscribed', 'member' => current_member, 'identifier' => identifier,
                   'streams' => names)
    end

    def reject_with_record
      Record.event('type' => 'rejected', 'member' => current_member, 'identifier' => identifier)
      reject
    end
  end

  # Shared by ChatRoomChannel (with id) and Chats::RoomChannel.
  module RoomActions
    def sendMessage(data)
      ActionCable.server.broadcast(room_stream, { 'event' => 'newMessage', 'message' => message_json(data) })
    end

    def updateMessage(data)
      msg = message_json(data, id: data['id']).merge('edited_at' => Time.now.utc.iso8601(3))
      ActionCable.server.broadcast(room_stream, { 'event' => 'updatedMessage', 'message' => msg })
    end

    def deleteMessage(data)
      ActionCable.server.broadcast(room_stream, { 'event' => 'deletedMessage',
                                                  'message' => { 'id' => data['id'], 'parent_message' => nil } })
    end

    private

    def room_stream = "chat_room:#{params[:id]}"

    def message_json(data, id: nil)
      now = Time.now.utc.iso8601(3)
      {
        'id' => id || Record.next_id,
        'chat_room_id' => params[:id].to_s =~ /\A\d+\z/ ? params[:id].to_i : params[:id],
        'chat_room_uuid' => "room-#{params[:id]}",
        'chat_room_kind' => 'direct',
        'chat_room_participant_id' => current_member,
        'body' => data['body'],
        'rich_text_body' => data['rich_text_body'] || {},
        'sent_at' => now,
        'created_at' => now,
        'sender' => { 'id' => current_member, 'name' => "Member #{current_member}" },
        'creation_uuid' => data['creation_uuid'] || SecureRandom.uuid,
        'chat_thread_id' => data['chat_thread_id'],
        'parent_message_id' => data['parent_message_id'],
        'lesson_id' => nil,
        'edited_at' => nil,
        'replies_count' => 0,
        'total_thread_participants_count' => 0,
        'thread_participants_preview' => [],
        'chat_thread_replies_count' => 0,
      }
    end
  end
end

class NotificationChannel < ApplicationCable::Channel
  def subscribed
    streams_from "notifications:#{current_member}", "notification-channel-#{current_member}"
  end

  def markAllRead(_data)
    ActionCable.server.broadcast("notifications:#{current_member}",
                                 { 'event' => 'resetNewNotificationCount', 'new_notifications_count' => 0 })
  end
end

class ChatRoomChannel < ApplicationCable::Channel
  include ApplicationCable::RoomActions

  def subscribed
    return reject_with_record if params[:id].to_s == 'forbidden'
    names = ["chat_room_member:#{current_member}", "chat-room-channel-#{current_member}"]
    names += [room_stream, "chat-room-#{params[:id]}-channel"] if params[:id].present?
    streams_from(*names)
  end

  def markRead(_data)
    ActionCable.server.broadcast("chat_room_member:#{current_member}",
                                 { 'event' => 'chatRoomRead', 'chat_room_uuid' => "room-#{params[:id]}" })
  end
end

module Chats
  class RoomChannel < ApplicationCable::Channel
    include ApplicationCable::RoomActions

    def subscribed
      return reject_with_record if params[:id].blank? || params[:id].to_s == 'forbidden'
      streams_from room_stream, "chat-room-#{params[:id]}-channel"
    end
  end

  class CommunityMemberThreadsChannel < ApplicationCable::Channel
    def subscribed
      streams_from "chat_threads:#{current_member}", "chat-community-member-#{current_member}-threads-channel"
    end

    def markThreadRead(data)
      ActionCable.server.broadcast("chat_threads:#{current_member}",
                                   { 'event' => 'chatThreadRead', 'chat_thread_id' => data['chat_thread_id'] })
    end
  end
end

class RejectedRoomChannel < ApplicationCable::Channel
  def subscribed
    reject_with_record
  end
end

# --- Rails 7.1+ remote disconnect (reason "remote", reconnect flag) on 6.1 -----------------------
ActionCable::RemoteConnections::RemoteConnection.prepend(Module.new do
  def disconnect(reconnect: true)
    server.broadcast internal_channel, { type: 'disconnect', reconnect: reconnect }
  end
end)
ActionCable::Connection::Base.prepend(Module.new do
  private

  def process_internal_message(message)
    case message['type']
    when 'disconnect'
      logger.info "Removing connection (#{connection_identifier})"
      close(reason: 'remote', reconnect: message.fetch('reconnect', true))
    end
  rescue Exception => e # rubocop:disable Lint/RescueException -- as Rails does
    logger.error "There was an exception - #{e.class}(#{e.message})"
    close
  end
end)

# --- ping period ----------------------------------------------------------------------------------
if (beat = ENV['CABLE_BEAT_INTERVAL'])
  secs = Float(beat)
  ActionCable::Server::Connections.prepend(Module.new do
    define_method(:setup_heartbeat_timer) do
      next if secs <= 0
      @heartbeat_timer ||= event_loop.timer(secs) do
        event_loop.post { connections.each(&:beat) }
      end
    end
  end)
end

# --- configuration --------------------------------------------------------------------------------
config = ActionCable.server.config
config.cable = { 'adapter' => 'async' }
config.connection_class = -> { ApplicationCable::Connection }
config.mount_path = '/cable'
config.logger = LOG
config.worker_pool_size = 4
extra = ENV.fetch('CABLE_ORIGINS', '').split(',').map(&:strip).reject(&:empty?)
config.allowed_request_origins = [%r{\Ahttps?://(127\.0\.0\.1|localhost)(:\d+)?\z}] + extra
config.disable_request_forgery_protection = ENV['CABLE_ALLOW_ANY_ORIGIN'] == '1'

# --- HTTP control API -----------------------------------------------------------------------------
module Control
  def self.json(status, body)
    [status, { 'Content-Type' => 'application/json' }, [JSON.generate(body)]]
  end

  def self.body(req)
    raw = req.body&.read.to_s
    raw.empty? ? {} : JSON.parse(raw)
  end

  def self.call(env)
    req = Rack::Request.new(env)
    route = "#{req.request_method} #{req.path_info.sub(%r{/\z}, '')}"
    case route
    when 'POST /broadcast'
      b = body(req)
      return json(400, { 'error' => 'stream missing' }) unless b['stream'].is_a?(String)
      ActionCable.server.broadcast(b['stream'], b['data'])
      json(200, { 'ok' => true, 'stream' => b['stream'] })
    when 'GET /performed'
      json(200, Record.snapshot(Record::PERFORMED))
    when 'GET /events'
      json(200, Record.snapshot(Record::EVENTS))
    when 'GET /connections'
      list = ActionCable.server.connections.map do |c|
        s = c.statistics
        { 'member' => c.current_member, 'identifier' => s[:identifier],
          'started_at' => s[:started_at].utc.iso8601(3), 'subscriptions' => s[:subscriptions] }
      end
      json(200, list)
    when 'POST /disconnect'
      b = body(req)
      return json(400, { 'error' => 'member missing' }) unless b['member'].is_a?(String)
      reconnect = b.fetch('reconnect', true) ? true : false
      ActionCable.server.remote_connections.where(current_member: b['member']).disconnect(reconnect: reconnect)
      json(200, { 'ok' => true, 'member' => b['member'], 'reconnect' => reconnect })
    when 'POST /restart'
      ActionCable.server.restart
      json(200, { 'ok' => true })
    when 'POST /reset'
      Record.reset
      json(200, { 'ok' => true })
    else
      json(404, { 'error' => "no route #{route}" })
    end
  rescue JSON::ParserError => e
    json(400, { 'error' => "bad JSON: #{e.message}" })
  rescue StandardError => e
    LOG.error("control #{route}: #{e.class}: #{e.message}\n#{e.backtrace.first(5).join("\n")}")
    json(500, { 'error' => "#{e.class}: #{e.message}" })
  end
end

map '/cable' do
  run ActionCable.server
end
map '/control' do
  run Control
end
map '/' do
  run lambda { |env|
    if ['', '/'].include?(env['PATH_INFO'])
      [200, { 'Content-Type' => 'text/plain' }, ["switchboard test Action Cable server\n"]]
    else
      [404, { 'Content-Type' => 'text/plain' }, ['Page not found']]
    end
  }
end
