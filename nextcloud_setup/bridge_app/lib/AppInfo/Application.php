<?php

declare(strict_types=1);

namespace OCA\DavPushBridge\AppInfo;

use OCA\DavPushBridge\Listener\DavChangeListener;
use OCP\AppFramework\App;
use OCP\AppFramework\Bootstrap\IBootContext;
use OCP\AppFramework\Bootstrap\IBootstrap;
use OCP\AppFramework\Bootstrap\IRegistrationContext;

class Application extends App implements IBootstrap {
	public const APP_ID = 'dav_push_bridge';

	/** OCA\DAV\Events classes (short names) that become a DavCollectionChangedEvent. */
	public const DAV_EVENTS = [
		'CardCreatedEvent', 'CardUpdatedEvent', 'CardDeletedEvent', 'CardMovedEvent',
		'AddressBookUpdatedEvent', 'AddressBookDeletedEvent', 'AddressBookShareUpdatedEvent',
		'CalendarUpdatedEvent', 'CalendarDeletedEvent', 'CalendarMovedToTrashEvent',
		'CalendarRestoredEvent', 'CalendarShareUpdatedEvent',
	];

	/** Calendar object events: forwarded only when the app setting calendar_objects is on. */
	public const OBJECT_EVENTS = [
		'CalendarObjectCreatedEvent', 'CalendarObjectUpdatedEvent', 'CalendarObjectDeletedEvent',
		'CalendarObjectMovedToTrashEvent', 'CalendarObjectRestoredEvent', 'CalendarObjectMovedEvent',
	];

	public function __construct(array $urlParams = []) {
		parent::__construct(self::APP_ID, $urlParams);
	}

	public function register(IRegistrationContext $context): void {
		// Listeners are registered by class name and resolved lazily: a class that this
		// Nextcloud version does not have (e.g. CardMovedEvent before 27) simply never fires.
		foreach (self::DAV_EVENTS as $name) {
			$context->registerEventListener('OCA\\DAV\\Events\\' . $name, DavChangeListener::class);
		}
		// Nextcloud 32 moved the calendar object events to OCP\Calendar\Events; listen to
		// only one family so that no change is forwarded twice.
		$namespace = class_exists('OCP\\Calendar\\Events\\CalendarObjectCreatedEvent')
			? 'OCP\\Calendar\\Events\\'
			: 'OCA\\DAV\\Events\\';
		foreach (self::OBJECT_EVENTS as $name) {
			$context->registerEventListener($namespace . $name, DavChangeListener::class);
		}
	}

	public function boot(IBootContext $context): void {
	}
}
