<?php

declare(strict_types=1);

namespace OCA\DavPushBridge\Listener;

use OCA\DavPushBridge\AppInfo\Application;
use OCA\DavPushBridge\Events\DavCollectionChangedEvent;
use OCP\EventDispatcher\Event;
use OCP\EventDispatcher\IEventDispatcher;
use OCP\EventDispatcher\IEventListener;
use OCP\IAppConfig;
use Psr\Log\LoggerInterface;

/**
 * Maps the DAV app's events to one compact DavCollectionChangedEvent (see EVENT.md).
 *
 * The getters are looked up with method_exists(), so the same code handles single-collection
 * events, share updates (old/added/removed shares) and moves (source/target).
 * Forwarding must never break the user's DAV request: every error is logged and swallowed.
 *
 * @template-implements IEventListener<Event>
 */
class DavChangeListener implements IEventListener {
	private const SYNC_TOKEN = '{http://sabredav.org/ns}sync-token';
	private const MAX_SHARES = 50;

	/** short class name => [kind, op] */
	private const OPS = [
		'CardCreatedEvent' => ['card', 'created'],
		'CardUpdatedEvent' => ['card', 'updated'],
		'CardDeletedEvent' => ['card', 'deleted'],
		'CardMovedEvent' => ['card', 'moved'],
		'AddressBookUpdatedEvent' => ['addressbook', 'updated'],
		'AddressBookDeletedEvent' => ['addressbook', 'deleted'],
		'AddressBookShareUpdatedEvent' => ['addressbook', 'shared'],
		'CalendarUpdatedEvent' => ['calendar', 'updated'],
		'CalendarDeletedEvent' => ['calendar', 'deleted'],
		'CalendarMovedToTrashEvent' => ['calendar', 'trashed'],
		'CalendarRestoredEvent' => ['calendar', 'restored'],
		'CalendarShareUpdatedEvent' => ['calendar', 'shared'],
		'CalendarObjectCreatedEvent' => ['calendar-object', 'created'],
		'CalendarObjectUpdatedEvent' => ['calendar-object', 'updated'],
		'CalendarObjectDeletedEvent' => ['calendar-object', 'deleted'],
		'CalendarObjectMovedToTrashEvent' => ['calendar-object', 'trashed'],
		'CalendarObjectRestoredEvent' => ['calendar-object', 'restored'],
		'CalendarObjectMovedEvent' => ['calendar-object', 'moved'],
	];

	public function __construct(
		private IEventDispatcher $dispatcher,
		private IAppConfig $appConfig,
		private LoggerInterface $logger,
	) {
	}

	public function handle(Event $event): void {
		if ($event instanceof DavCollectionChangedEvent) {
			return;
		}
		$class = get_class($event);
		$op = self::OPS[substr($class, strrpos($class, '\\') + 1)] ?? null;
		if ($op === null) {
			return;
		}
		try {
			if ($op[0] === 'calendar-object'
				&& !$this->appConfig->getValueBool(Application::APP_ID, 'calendar_objects', false)) {
				return;
			}
			$this->dispatcher->dispatchTyped(new DavCollectionChangedEvent(self::describe($event, $op[0], $op[1])));
		} catch (\Throwable $e) {
			$this->logger->warning('dav_push_bridge could not forward ' . $class, ['exception' => $e]);
		}
	}

	/** @return array<string, mixed> */
	public static function describe(Event $event, string $kind, string $op): array {
		$book = $kind === 'card' || $kind === 'addressbook';
		$noun = $book ? 'AddressBook' : 'Calendar';
		$key = $book ? 'addressBook' : 'calendar';
		$moved = method_exists($event, 'getSource' . $noun . 'Id');
		$side = $moved ? 'Source' : '';
		$data = $event->{'get' . $side . $noun . 'Data'}();
		// Deletions are dispatched before the backend bumps the token: it would be stale.
		$stale = $op === 'deleted' || $op === 'trashed';

		$result = [
			'kind' => $kind,
			'op' => $op,
			$key . 'Id' => (int)$event->{'get' . $side . $noun . 'Id'}(),
			$key . 'Uri' => (string)($data['uri'] ?? ''),
			'ownerPrincipal' => isset($data['principaluri']) ? (string)$data['principaluri'] : null,
			'syncToken' => $stale ? null : self::token($data),
			'sharePrincipals' => self::principals($event),
			'objectUri' => self::objectUri($event),
		];
		if ($moved) {
			$target = $event->{'getTarget' . $noun . 'Data'}();
			$result['target' . $noun . 'Id'] = (int)$event->{'getTarget' . $noun . 'Id'}();
			$result['target' . $noun . 'Uri'] = (string)($target['uri'] ?? '');
			$result['targetOwnerPrincipal'] = isset($target['principaluri']) ? (string)$target['principaluri'] : null;
			$result['targetSyncToken'] = self::token($target);
		}
		return $result;
	}

	private static function token(array $data): ?int {
		$token = $data[self::SYNC_TOKEN] ?? null;
		return is_numeric($token) ? (int)$token : null;
	}

	private static function objectUri(Event $event): ?string {
		foreach (['getCardData', 'getObjectData'] as $getter) {
			if (method_exists($event, $getter)) {
				$object = $event->$getter();
				return isset($object['uri']) ? (string)$object['uri'] : null;
			}
		}
		return null;
	}

	/** Sharee principals (users, groups, circles) from every share list the event has. */
	private static function principals(Event $event): array {
		$shares = [];
		foreach (['getShares', 'getOldShares', 'getAdded', 'getRemoved', 'getSourceShares', 'getTargetShares'] as $getter) {
			if (method_exists($event, $getter)) {
				$shares = array_merge($shares, (array)$event->$getter());
			}
		}
		$principals = [];
		foreach ($shares as $share) {
			// Share rows carry the principal; "added" entries and "removed" hrefs carry
			// "principal:principals/users/bob".
			$value = is_array($share)
				? ($share['{http://owncloud.org/ns}principal'] ?? $share['href'] ?? null)
				: $share;
			if (!is_string($value)) {
				continue;
			}
			if (str_starts_with($value, 'principal:')) {
				$value = substr($value, strlen('principal:'));
			}
			if (str_starts_with($value, 'principals/')) {
				$principals[$value] = true;
			}
		}
		return array_slice(array_keys($principals), 0, self::MAX_SHARES);
	}
}
