//! The client-server API: one file per endpoint group, and the route table.

mod account;
mod account_data;
mod admin;
mod appservice;
mod backup;
mod devices;
mod directory;
mod discovery;
mod ephemeral;
mod events;
mod filter;
mod keys;
pub mod media;
mod membership;
mod messages;
mod notifications;
mod profile;
mod register;
mod reports;
mod room_create;
mod room_upgrade;
mod search;
mod session;
mod space;
pub(crate) mod sync;
mod threads;
mod uiaa;
mod voip;

use std::sync::Arc;

use axum::{Router, extract::State, routing::get};

use crate::{
    Services,
    router::{Guard, RumaRouter},
};

/// Registers every client API endpoint.
#[allow(deprecated)] // The legacy media endpoints stay for older clients.
pub fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        // Discovery.
        .ruma(discovery::versions)
        .ruma(discovery::well_known_client)
        .route(
            "/.well-known/matrix/server",
            get(|State(services): State<Arc<Services>>| discovery::well_known_server(services)),
        )
        .ruma(discovery::capabilities)
        // Server administration (Synapse's admin API shape).
        .ruma(admin::new_token)
        .ruma(admin::list_tokens)
        // Sessions and accounts.
        // Bridges.
        .ruma(appservice::ping)
        .ruma(session::login_types)
        .ruma(session::login)
        .ruma(session::refresh)
        .ruma(session::logout)
        .ruma(session::logout_all)
        .ruma(session::whoami)
        .ruma(register::register)
        .ruma(register::available)
        .ruma(register::token_validity)
        .ruma(account::change_password)
        .ruma(account::deactivate)
        .ruma(devices::list)
        .ruma(devices::get)
        .ruma(devices::update)
        .ruma(devices::delete)
        .ruma(devices::delete_many)
        // Rooms.
        .ruma_guarded(room_create::create_room, Guard::WRITE)
        .ruma_guarded(room_upgrade::upgrade, Guard::WRITE)
        .ruma(membership::join_by_id)
        .ruma(membership::join_by_id_or_alias)
        .ruma(membership::invite)
        .ruma(membership::leave)
        .ruma(membership::forget)
        .ruma(membership::kick)
        .ruma(membership::ban)
        .ruma(membership::unban)
        .ruma(membership::joined)
        .ruma_guarded(membership::members, Guard::READ)
        .ruma(membership::joined_members_of)
        .ruma(directory::create)
        // Clients resolve aliases before they sign in (matrix-sdk sends no
        // token here): anyone may, within the lookups' rate limit.
        .ruma_guarded(directory::resolve, Guard::LOOKUP)
        .ruma(directory::delete)
        .ruma(directory::room_aliases)
        .ruma(directory::get_visibility)
        .ruma(directory::set_visibility)
        .ruma_guarded(directory::list, Guard::SIGNED_IN)
        .ruma_raw_guarded(directory::summary, Guard::SIGNED_IN)
        .ruma_raw_guarded(space::hierarchy, Guard::READ)
        .ruma(directory::list_filtered)
        // Events.
        .ruma_guarded(events::send_message, Guard::WRITE)
        .ruma_guarded(events::send_state, Guard::WRITE)
        .ruma(events::get_state)
        .ruma(events::get_state_for_key)
        .ruma_guarded(events::redact, Guard::WRITE)
        .ruma_guarded(reports::event, Guard::WRITE)
        .ruma_guarded(reports::room, Guard::WRITE)
        .ruma(events::get_event)
        .ruma_guarded(events::context, Guard::READ)
        .ruma_guarded(messages::messages, Guard::READ)
        .ruma_guarded(messages::event_at_time, Guard::READ)
        .ruma_guarded(messages::relating, Guard::READ)
        .ruma_guarded(messages::relating_with_type, Guard::READ)
        .ruma_guarded(messages::relating_with_type_and_event, Guard::READ)
        .ruma_guarded(threads::threads, Guard::READ)
        .ruma_raw(threads::third_party_ids)
        .ruma_raw(voip::turn_server)
        .ruma(threads::protocols)
        // Sync and what it carries.
        .ruma_raw(sync::sync)
        .ruma(sync::sliding_sync)
        .ruma_guarded(membership::knock, Guard::WRITE)
        // Costly (thousands of events read): counted with the writes.
        .ruma_guarded(search::search, Guard::WRITE)
        .ruma_guarded(notifications::notifications, Guard::WRITE)
        .ruma_guarded(filter::create, Guard::READ)
        .ruma(filter::get)
        .ruma(ephemeral::receipt)
        .ruma(ephemeral::read_markers)
        .ruma(ephemeral::typing)
        .ruma(ephemeral::get_presence)
        .ruma(ephemeral::set_presence)
        .ruma_guarded(profile::profile, Guard::SIGNED_IN)
        .ruma_guarded(profile::displayname, Guard::SIGNED_IN)
        .ruma_guarded(profile::avatar_url, Guard::SIGNED_IN)
        .ruma(profile::set_displayname)
        .ruma(profile::set_avatar)
        .ruma(profile::search)
        .ruma_guarded(account_data::set_global, Guard::READ)
        .ruma(account_data::get_global)
        .ruma_guarded(account_data::set_room, Guard::READ)
        .ruma(account_data::get_room)
        .ruma(account_data::get_room_tags)
        .ruma(account_data::put_tag)
        .ruma(account_data::remove_tag)
        .ruma(account_data::push_rules)
        .ruma(account_data::push_rules_global)
        .ruma(account_data::push_rule)
        .ruma(account_data::set_push_rule)
        .ruma(account_data::delete_push_rule)
        .ruma(account_data::push_rule_enabled)
        .ruma(account_data::set_push_rule_enabled)
        .ruma(account_data::push_rule_actions)
        .ruma(account_data::set_push_rule_actions)
        .ruma(account_data::pushers)
        .ruma(account_data::set_pushers)
        // Media.
        .ruma(media::upload)
        .ruma_guarded(media::download, Guard::READ)
        .ruma_guarded(media::download_as, Guard::READ)
        .ruma_guarded(media::thumbnail_v1, Guard::READ)
        .ruma(media::config_v1)
        .ruma(media::config_v3)
        .ruma_guarded(media::preview_v1, Guard::READ)
        .ruma_guarded(media::preview_v3, Guard::SIGNED_IN)
        .ruma_guarded(media::download_v3, Guard::SIGNED_IN)
        .ruma_guarded(media::thumbnail_v3, Guard::SIGNED_IN)
        // End-to-end encryption.
        .ruma_guarded(keys::upload, Guard::READ)
        .ruma_guarded(keys::query, Guard::READ)
        .ruma_guarded(keys::claim, Guard::READ)
        .ruma(keys::changes)
        .ruma(keys::upload_signing)
        .ruma_guarded(keys::upload_sigs, Guard::READ)
        .ruma_guarded(keys::send_to_device, Guard::WRITE)
        .ruma(backup::create_version)
        .ruma(backup::update_version)
        .ruma(backup::latest)
        .ruma(backup::info)
        .ruma(backup::delete_version)
        .ruma(backup::add_keys)
        .ruma(backup::add_room_keys)
        .ruma(backup::add_session_key)
        .ruma(backup::get_keys)
        .ruma(backup::get_room_keys)
        .ruma(backup::get_session_key)
        .ruma(backup::delete_keys)
        .ruma(backup::delete_room_keys)
        .ruma(backup::delete_session_key)
}
